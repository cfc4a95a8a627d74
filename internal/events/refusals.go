package events

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Refusals records the events a consumer refused because they failed
// verification: one warning and one count (payonce.events.refused, by
// subject) per refused event, so a forger's attempts are seen, not just
// dropped. The consumer then terminates the message to the dead-letter
// stream; it is never applied.
type Refusals struct {
	logger  *slog.Logger
	counter metric.Int64Counter
}

// NewRefusals returns the recorder on logger and meter (either may be nil).
func NewRefusals(logger *slog.Logger, meter metric.Meter) (Refusals, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	c, err := meter.Int64Counter("payonce.events.refused",
		metric.WithDescription("events refused by verification and dead-lettered, never applied"))
	if err != nil {
		return Refusals{}, fmt.Errorf("refused-events counter: %w", err)
	}
	return Refusals{logger: logger, counter: c}, nil
}

// Record notes that an event on subject was refused for err.
func (r Refusals) Record(ctx context.Context, subject string, err error) {
	if r.logger != nil {
		r.logger.WarnContext(ctx, "event refused: failed verification; dead-lettered, not applied", "subject", subject, "err", err)
	}
	if r.counter != nil {
		r.counter.Add(ctx, 1, metric.WithAttributes(attribute.String("messaging.destination.name", subject)))
	}
}
