// Package eventbus is payonce's use of NATS JetStream: the streams and their
// settings, publishing with de-duplication ids and trace context, and a
// consumer loop with explicit acks, bounded redelivery and dead letters.
//
// Both services call EnsureStreams at start-up; the definitions are
// idempotent, so whichever starts first creates them and the other finds
// them as they should be.
package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/failpoint"
	"github.com/payonce/payonce/internal/telemetry"
)

// Stream and consumer settings, in one place so the docs can quote them.
const (
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. A relay
	// that re-publishes later than this relies on the consumer's inbox.
	DuplicateWindow = 2 * time.Minute
	// MaxAge bounds how long events are kept; consumers are expected to keep up.
	MaxAge = 7 * 24 * time.Hour
	// AckWait is how long a delivered message may stay unacknowledged before
	// it is redelivered: longer than a charge normally takes.
	AckWait = 30 * time.Second
	// MaxDeliver bounds redelivery of a message that keeps failing; after
	// that it is a dead letter (see DeadLetterStream).
	MaxDeliver = 10
	// DeadLetterStream captures JetStream's max-deliveries advisories, so a
	// poison message is recorded for an operator instead of vanishing.
	DeadLetterStream = "DEADLETTER"
)

// Streams returns the stream definitions payonce uses.
func Streams() []jetstream.StreamConfig {
	common := func(name, subjects, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      MaxAge,
			Duplicates:  DuplicateWindow,
			Replicas:    1,
		}
	}
	return []jetstream.StreamConfig{
		common("ORDERS", "orders.>", "events published by the orders service"),
		common("PAYMENTS", "payments.>", "events published by the payments service"),
		{
			Name:        DeadLetterStream,
			Description: "max-deliveries advisories: messages a consumer gave up on",
			Subjects:    []string{"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      MaxAge,
		},
	}
}

// EnsureStreams creates or updates every stream in Streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, cfg := range Streams() {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// StreamOf returns the stream holding subject: its first token, upper-cased
// ("orders.created" -> ORDERS), which is how Streams names them.
func StreamOf(subject string) (string, error) {
	first, _, _ := strings.Cut(subject, ".")
	for _, cfg := range Streams() {
		if cfg.Name == strings.ToUpper(first) && cfg.Name != DeadLetterStream {
			return cfg.Name, nil
		}
	}
	return "", fmt.Errorf("no stream holds subject %q", subject)
}

// Publisher publishes events with de-duplication ids and trace context.
type Publisher struct {
	JS         jetstream.JetStream
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// Publish sends data on subject with Nats-Msg-Id = id, in a producer span
// that is a child of ctx's span; the span's context rides in the message
// headers. A duplicate inside the window is acknowledged by JetStream
// without being stored again, which Publish reports as success.
func (p Publisher) Publish(ctx context.Context, subject, id string, data []byte) (duplicate bool, err error) {
	ctx, span := p.Tracer.Start(ctx, "publish "+subject, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", id),
		))
	defer span.End()
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, id)
	telemetry.InjectNATS(ctx, p.Propagator, msg)
	ack, err := p.JS.PublishMsg(ctx, msg)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
		return false, fmt.Errorf("publish %s %s: %w", subject, id, err)
	}
	span.SetAttributes(attribute.Bool("messaging.nats.duplicate", ack.Duplicate), attribute.Int64("messaging.nats.sequence", int64(ack.Sequence)))
	return ack.Duplicate, nil
}

// Handler processes one delivered message. It returns nil to ack. An error
// makes the message redeliver after a back-off; a Permanent error
// terminates it at once (it would fail the same way every time).
type Handler func(ctx context.Context, msg jetstream.Msg) error

// permanentError marks a message that can never succeed.
type permanentError struct{ err error }

func (e permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the consumer terminates the message instead of
// redelivering it: for malformed payloads, not for outages.
func Permanent(err error) error { return permanentError{err} }

// RedeliveryDelay is how long a failed message waits before its next
// delivery: it grows with each attempt so an outage of a dependency is not
// hammered, and stays short at first so a blip costs little.
func RedeliveryDelay(delivered uint64) time.Duration {
	steps := []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}
	if delivered == 0 {
		delivered = 1
	}
	return steps[min(delivered-1, uint64(len(steps)-1))]
}

// FailBeforeAck is the failpoint (internal/failpoint) between a handled
// message and its ack.
const FailBeforeAck = "eventbus.before_ack"

// Consumer describes a durable pull consumer.
type Consumer struct {
	Stream  string
	Durable string
	// Subjects filters the stream; empty means all.
	Subjects   []string
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// OnError observes handler failures (for logs); may be nil.
	OnError func(ctx context.Context, msg jetstream.Msg, err error)
}

// Config returns the consumer's JetStream definition.
func (c Consumer) Config() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		FilterSubjects: c.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        AckWait,
		MaxDeliver:     MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  256,
	}
}

// Run consumes until ctx ends. Each message is handled in a consumer span
// continuing the publisher's trace, then acked, nak'ed with back-off, or
// terminated. It returns nil when ctx ends.
func (c Consumer) Run(ctx context.Context, js jetstream.JetStream, handle Handler) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config())
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.Durable, c.Stream, err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) { c.deliver(ctx, msg, handle) },
		jetstream.PullMaxMessages(64),
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.Durable, err)
	}
	<-ctx.Done()
	// Drain lets the handler finish the messages already delivered, so a
	// graceful shutdown does not turn them into redeliveries.
	cc.Drain()
	<-cc.Closed()
	return nil
}

func (c Consumer) deliver(ctx context.Context, msg jetstream.Msg, handle Handler) {
	msgCtx := telemetry.ExtractNATS(ctx, c.Propagator, msg.Headers())
	meta, _ := msg.Metadata()
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", msg.Subject()),
		attribute.String("messaging.consumer.group.name", c.Durable),
		attribute.String("messaging.message.id", msg.Headers().Get(jetstream.MsgIDHeader)),
	}
	if meta != nil {
		attrs = append(attrs, attribute.Int64("messaging.nats.num_delivered", int64(meta.NumDelivered)))
	}
	msgCtx, span := c.Tracer.Start(msgCtx, "process "+msg.Subject(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	defer span.End()

	err := handle(msgCtx, msg)
	var perm permanentError
	switch {
	case err == nil:
		// A crash here leaves the effect committed and the message
		// unacknowledged: it is redelivered and the inbox must absorb it.
		failpoint.Hit(FailBeforeAck)
		if ackErr := msg.DoubleAck(msgCtx); ackErr != nil {
			// The effect is committed with its inbox row; a redelivery
			// caused by a lost ack is dropped by the inbox.
			span.RecordError(ackErr)
		}
	case errors.As(err, &perm):
		span.RecordError(err)
		span.SetStatus(codes.Error, "terminated")
		_ = msg.Term()
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, "will be redelivered")
		delivered := uint64(1)
		if meta != nil {
			delivered = meta.NumDelivered
		}
		_ = msg.NakWithDelay(RedeliveryDelay(delivered))
	}
	if err != nil && c.OnError != nil {
		c.OnError(msgCtx, msg, err)
	}
}
