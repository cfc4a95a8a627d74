package eventbus

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// What became of one delivery, the outcome label of
// payonce_events_consumed_total.
const (
	// OutcomeAcked: handled (or found in the inbox) and acknowledged.
	OutcomeAcked = "acked"
	// OutcomeRetried: a transient failure; redelivered after a back-off.
	OutcomeRetried = "retried"
	// OutcomeDeadLettered: a permanent failure; copied to the
	// DeadLetterStream and terminated. Anything above zero needs a person.
	OutcomeDeadLettered = "dead_lettered"
)

// consumerMetrics counts a consumer's deliveries, exported as
// payonce_events_consumed_total{consumer, outcome} and
// payonce_events_redelivered_total{consumer}.
type consumerMetrics struct {
	consumed    metric.Int64Counter
	redelivered metric.Int64Counter
	consumer    attribute.KeyValue
}

// newConsumerMetrics makes the counters on meter (nil: counts nothing) and
// exports every outcome at zero, so a dashboard and an alert on dead
// letters see a series before the first one.
func newConsumerMetrics(meter metric.Meter, durable string) *consumerMetrics {
	if meter == nil {
		return nil
	}
	consumed, err := meter.Int64Counter("payonce.events.consumed",
		metric.WithDescription("deliveries a consumer settled, by consumer and outcome (acked, retried, dead_lettered)"))
	if err != nil {
		return nil // only an invalid name fails, and the name is a constant
	}
	redelivered, err := meter.Int64Counter("payonce.events.redelivered",
		metric.WithDescription("deliveries of a message the consumer had been given before (a retry after a failure, an expired AckWait or a lost ack)"))
	if err != nil {
		return nil
	}
	m := &consumerMetrics{consumed: consumed, redelivered: redelivered, consumer: attribute.String("consumer", durable)}
	ctx := context.Background()
	for _, o := range []string{OutcomeAcked, OutcomeRetried, OutcomeDeadLettered} {
		m.consumed.Add(ctx, 0, metric.WithAttributes(m.consumer, attribute.String("outcome", o)))
	}
	m.redelivered.Add(ctx, 0, metric.WithAttributes(m.consumer))
	return m
}

func (m *consumerMetrics) settled(ctx context.Context, delivered uint64, outcome string) {
	if m == nil {
		return
	}
	m.consumed.Add(ctx, 1, metric.WithAttributes(m.consumer, attribute.String("outcome", outcome)))
	if delivered > 1 {
		m.redelivered.Add(ctx, 1, metric.WithAttributes(m.consumer))
	}
}
