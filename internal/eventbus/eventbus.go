// Package eventbus is payonce's use of NATS JetStream: the streams and their
// settings, publishing with de-duplication ids and trace context, and a
// consumer loop with explicit acks and dead letters.
//
// A consumer tells two kinds of failure apart. A transient one (a database,
// the coordinator or the bank away) is retried with capped exponential
// back-off and no delivery limit, however long the outage; a long-running
// handler keeps its message with InProgress heartbeats, so AckWait never
// expires under it. A permanent one (a malformed or unverifiable event,
// returned as a *PermanentError) is copied, body, headers and reason, to
// the DEADLETTER stream and terminated; `payonce-cli deadletters` lists,
// shows and replays it once its cause is fixed.
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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
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
	// MaxAge bounds how long events are kept, and so how long a message can
	// still be redelivered: the consumers' inboxes keep ids at least this
	// long (see internal/outbox, InboxRetention).
	MaxAge = 7 * 24 * time.Hour
	// AckWait is how long a delivered message may stay unacknowledged
	// before the server redelivers it. A live handler never reaches it: the
	// consumer sends InProgress every HeartbeatInterval while it holds a
	// message, from the moment the message arrives (queued or running).
	AckWait = 30 * time.Second
	// HeartbeatInterval is how often a held message's AckWait is reset.
	HeartbeatInterval = AckWait / 3
	// MaxDeliver is unlimited: a transient failure (a database, the
	// coordinator or the bank away) is retried for as long as it lasts,
	// with capped back-off. Only a PermanentError ends a message early, and
	// then it goes to the DeadLetterStream, never nowhere.
	MaxDeliver = -1
	// MaxRedeliveryDelay caps the back-off between two deliveries of a
	// failing message, so a message is retried within this long of its
	// dependency coming back, however long the outage was.
	MaxRedeliveryDelay = 30 * time.Second
	// DeadLetterStream keeps every message a consumer gave up on (a
	// permanent failure): the message itself, its headers, and why.
	DeadLetterStream = "DEADLETTER"
	// DeadLetterSubjectPrefix starts the subject of a dead letter:
	// deadletter.<consumer>.<original subject>.
	DeadLetterSubjectPrefix = "deadletter."
	// ClusterReplicas is the replication of every stream when the server is
	// part of a cluster: an acknowledged publish is then on a majority (2 of
	// 3) of the nodes, so one node's loss or disk loses nothing.
	ClusterReplicas = 3
)

// Streams returns the stream definitions payonce uses, with one replica
// (a single server). See StreamsFor.
func Streams() []jetstream.StreamConfig { return StreamsFor(1) }

// StreamsFor returns the stream definitions with replicas copies of each.
func StreamsFor(replicas int) []jetstream.StreamConfig {
	common := func(name, subjects, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      MaxAge,
			Duplicates:  DuplicateWindow,
			Replicas:    replicas,
		}
	}
	return []jetstream.StreamConfig{
		common("ORDERS", "orders.>", "events published by the orders service"),
		common("PAYMENTS", "payments.>", "events published by the payments service"),
		common(DeadLetterStream, DeadLetterSubjectPrefix+">", "messages a consumer gave up on, with their headers and the reason"),
	}
}

// EnsureStreams creates or updates every stream: with ClusterReplicas
// replicas when the connected server belongs to a cluster, one otherwise.
// The choice follows the deployment, so the same binary runs against the
// one-node test server and the 3-node cluster of make dev.
func EnsureStreams(ctx context.Context, js jetstream.JetStream) error {
	replicas := 1
	if nc := js.Conn(); nc != nil && nc.ConnectedClusterName() != "" {
		replicas = ClusterReplicas
	}
	for _, cfg := range StreamsFor(replicas) {
		if err := ensureStream(ctx, js, cfg); err != nil {
			return err
		}
	}
	return nil
}

// ensureStream creates or updates one stream, retrying for up to a minute:
// a replicated stream needs its Raft group elected, which on a busy
// machine can outlast one API request's timeout, and instances starting
// together race to create it ("already in use" is then retried as an update).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		attempt, cancelAttempt := context.WithTimeout(ctx, 15*time.Second)
		_, err := js.CreateOrUpdateStream(attempt, cfg)
		cancelAttempt()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
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
// means a transient failure: the message is redelivered after a back-off,
// for as long as it takes. A *PermanentError sends it to the dead-letter
// stream at once (it would fail the same way every time).
type Handler func(ctx context.Context, msg jetstream.Msg) error

// PermanentError marks a message that can never succeed however often it
// is delivered: it is malformed, or fails verification. The consumer
// copies it to the DeadLetterStream with Err's text as the reason and
// terminates it. An outage is never permanent: return it as it is.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the consumer dead-letters the message instead of
// redelivering it: for malformed or unverifiable events, not for outages.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("unspecified")
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or an error it wraps) is a PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RedeliveryDelay is how long a failed message waits before its next
// delivery: it doubles from 100 ms with each attempt, so a blip costs
// little and an outage is not hammered, and is capped at
// MaxRedeliveryDelay, so the work resumes soon after the outage ends.
func RedeliveryDelay(delivered uint64) time.Duration {
	return backoff(delivered, MaxRedeliveryDelay)
}

func backoff(delivered uint64, ceiling time.Duration) time.Duration {
	if delivered == 0 {
		delivered = 1
	}
	d := 100 * time.Millisecond
	for i := uint64(1); i < delivered && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
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
	// Concurrency is how many messages are handled at once; default 4.
	Concurrency int
	// AckWait overrides the package's AckWait (tests shorten it); the
	// heartbeat runs at a third of it.
	AckWait time.Duration
	// MaxRedeliveryDelay overrides the package's cap on back-off (tests
	// shorten it).
	MaxRedeliveryDelay time.Duration
	// Meter, when set, receives the consumer's counters (metrics.go):
	// deliveries by outcome, and redeliveries.
	Meter metric.Meter
}

// Config returns the consumer's JetStream definition.
func (c Consumer) Config() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.Durable,
		FilterSubjects: c.Subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.ackWait(),
		MaxDeliver:     MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  256,
	}
}

func (c Consumer) redeliveryDelay(delivered uint64) time.Duration {
	if c.MaxRedeliveryDelay > 0 {
		return backoff(delivered, c.MaxRedeliveryDelay)
	}
	return RedeliveryDelay(delivered)
}

func (c Consumer) ackWait() time.Duration {
	if c.AckWait > 0 {
		return c.AckWait
	}
	return AckWait
}

// Run consumes until ctx ends. Each message is handled in a consumer span
// continuing the publisher's trace, then acked, nak'ed with back-off, or
// dead-lettered. It returns nil when ctx ends.
//
// Every message the client holds is heartbeated (InProgress) from the
// moment it arrives until it is settled, whether it is running or waiting
// for one of the Concurrency slots: so neither a long handler nor a long
// queue lets AckWait expire and cause a redelivery nobody asked for.
func (c Consumer) Run(ctx context.Context, js jetstream.JetStream, handle Handler) error {
	cons, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config())
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", c.Durable, c.Stream, err)
	}
	metrics := newConsumerMetrics(c.Meter, c.Durable)
	workers := c.Concurrency
	if workers <= 0 {
		workers = 4
	}
	slots := make(chan struct{}, workers)
	var held sync.WaitGroup
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		held.Add(1)
		stopBeat := c.heartbeat(msg)
		go func() {
			defer held.Done()
			defer stopBeat()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				// Shutting down: give it back now rather than after AckWait.
				_ = msg.Nak()
				return
			}
			defer func() { <-slots }()
			c.deliver(ctx, js, msg, handle, metrics)
		}()
	},
		// The server never has more outstanding than MaxAckPending, and
		// every held message is heartbeated, so prefetch only sets how
		// soon the next messages are at hand.
		jetstream.PullMaxMessages(2*workers),
		jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", c.Durable, err)
	}
	<-ctx.Done()
	// Drain stops fetching; the messages already held finish (or are
	// given back), so a graceful shutdown does not turn them into
	// redeliveries after AckWait.
	cc.Drain()
	<-cc.Closed()
	held.Wait()
	return nil
}

// heartbeat resets msg's AckWait until the returned stop is called.
func (c Consumer) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(c.ackWait() / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done) }
}

func (c Consumer) deliver(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, handle Handler, metrics *consumerMetrics) {
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
	delivered := uint64(1)
	if meta != nil {
		delivered = meta.NumDelivered
	}
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
		metrics.settled(msgCtx, delivered, OutcomeAcked)
	case IsPermanent(err):
		span.RecordError(err)
		if dlErr := c.deadLetter(msgCtx, js, msg, meta, err); dlErr != nil {
			// Not recorded, so not terminated: the next delivery tries again.
			span.RecordError(dlErr)
			span.SetStatus(codes.Error, "dead letter not recorded; will be redelivered")
			_ = msg.NakWithDelay(c.redeliveryDelay(delivered))
			err = errors.Join(err, dlErr)
			metrics.settled(msgCtx, delivered, OutcomeRetried)
			break
		}
		span.SetStatus(codes.Error, "dead-lettered")
		_ = msg.Term()
		metrics.settled(msgCtx, delivered, OutcomeDeadLettered)
	default:
		span.RecordError(err)
		span.SetStatus(codes.Error, "will be redelivered")
		_ = msg.NakWithDelay(c.redeliveryDelay(delivered))
		metrics.settled(msgCtx, delivered, OutcomeRetried)
	}
	if err != nil && c.OnError != nil {
		c.OnError(msgCtx, msg, err)
	}
}
