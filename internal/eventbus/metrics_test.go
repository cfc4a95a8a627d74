package eventbus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/eventbus"
)

// TestConsumerCountsOutcomesAndRedeliveries: every outcome is exported at
// zero before anything arrives (an alert on dead letters needs a series),
// and then a message that fails once and succeeds, a poison message and a
// good one count as 2 acked, 1 retried, 1 dead-lettered and 1 redelivery.
func TestConsumerCountsOutcomesAndRedeliveries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js := connect(t, ctx)
	reader := sdkmetric.NewManualReader()
	meter := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	counts := func() (consumed map[string]int64, redelivered int64) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		consumed = map[string]int64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				sum, _ := m.Data.(metricdata.Sum[int64])
				for _, dp := range sum.DataPoints {
					if c, _ := dp.Attributes.Value("consumer"); c.AsString() != "counted" {
						t.Errorf("%s has consumer=%q", m.Name, c.AsString())
					}
					switch m.Name {
					case "payonce.events.consumed":
						o, _ := dp.Attributes.Value(attribute.Key("outcome"))
						consumed[o.AsString()] = dp.Value
					case "payonce.events.redelivered":
						redelivered = dp.Value
					}
				}
			}
		}
		return consumed, redelivered
	}

	var mu sync.Mutex
	failed := map[string]bool{}
	done := make(chan string, 8)
	c := eventbus.Consumer{Stream: "ORDERS", Durable: "counted", Meter: meter, MaxRedeliveryDelay: 50 * time.Millisecond}
	runConsumer(t, ctx, js, c, func(_ context.Context, msg jetstream.Msg) error {
		id := msg.Headers().Get(jetstream.MsgIDHeader)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case id == "poison":
			done <- id
			return eventbus.Permanent(errors.New("does not verify"))
		case id == "flaky" && !failed[id]:
			failed[id] = true
			return errors.New("database away")
		}
		done <- id
		return nil
	})
	eventually(t, ctx, func() bool {
		consumed, _ := counts()
		return len(consumed) == 3
	})
	if consumed, redelivered := counts(); consumed[eventbus.OutcomeDeadLettered] != 0 || consumed[eventbus.OutcomeAcked] != 0 || redelivered != 0 {
		t.Fatalf("before any message: %v, %d redelivered; want zeros", consumed, redelivered)
	}

	pub := eventbus.Publisher{JS: js, Tracer: noop.NewTracerProvider().Tracer("t"), Propagator: propagation.TraceContext{}}
	for _, id := range []string{"flaky", "poison", "fine"} {
		if _, err := pub.Publish(ctx, "orders.created", id, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("not every message handled")
		}
	}
	eventually(t, ctx, func() bool {
		consumed, redelivered := counts()
		return consumed[eventbus.OutcomeAcked] == 2 && consumed[eventbus.OutcomeRetried] == 1 &&
			consumed[eventbus.OutcomeDeadLettered] == 1 && redelivered == 1
	})
}
