package telemetry

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// NATSHeaderCarrier lets an OpenTelemetry propagator read and write W3C
// trace context in NATS message headers, which is how a trace continues
// from the publisher of an event to its consumer.
type NATSHeaderCarrier nats.Header

// Get returns the first value of key.
func (c NATSHeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set replaces the values of key.
func (c NATSHeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the header names.
func (c NATSHeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

var _ propagation.TextMapCarrier = NATSHeaderCarrier(nil)

// InjectNATS writes ctx's trace context into msg's headers, creating them
// if needed. Call it with the publish span's context so the consumer's span
// becomes that span's child.
func InjectNATS(ctx context.Context, prop propagation.TextMapPropagator, msg *nats.Msg) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	prop.Inject(ctx, NATSHeaderCarrier(msg.Header))
}

// ExtractNATS returns ctx joined to the trace carried in header, if any.
func ExtractNATS(ctx context.Context, prop propagation.TextMapPropagator, header nats.Header) context.Context {
	if header == nil {
		return ctx
	}
	return prop.Extract(ctx, NATSHeaderCarrier(header))
}
