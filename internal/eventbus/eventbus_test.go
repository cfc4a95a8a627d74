package eventbus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/testenv"
)

func TestStreamOf(t *testing.T) {
	for subject, want := range map[string]string{"orders.created": "ORDERS", "payments.failed": "PAYMENTS"} {
		if got, err := eventbus.StreamOf(subject); err != nil || got != want {
			t.Errorf("StreamOf(%q) = %q, %v; want %q", subject, got, err, want)
		}
	}
	for _, subject := range []string{"inventory.created", "", "DEADLETTER.x"} {
		if _, err := eventbus.StreamOf(subject); err == nil {
			t.Errorf("StreamOf(%q) accepted", subject)
		}
	}
}

// TestConsumerRedeliversFailuresAndTerminatesPoison runs the consumer loop
// against a real JetStream: a handler error means redelivery, a Permanent
// error means the message is dropped at once, success means ack; and the
// handler's context continues the publisher's trace.
func TestConsumerRedeliversFailuresAndTerminatesPoison(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second service starting finds the streams as they are.
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)).Tracer("test")
	prop := propagation.TraceContext{}
	pub := eventbus.Publisher{JS: js, Tracer: tracer, Propagator: prop}

	pubCtx, root := tracer.Start(ctx, "request")
	for _, id := range []string{"flaky", "poison", "fine"} {
		if _, err := pub.Publish(pubCtx, "orders.created", id, []byte(id)); err != nil {
			t.Fatal(err)
		}
	}
	if dup, err := pub.Publish(pubCtx, "orders.created", "fine", []byte("fine")); err != nil || !dup {
		t.Fatalf("re-publish of the same id: duplicate=%v err=%v, want a dropped duplicate", dup, err)
	}
	root.End()

	var mu sync.Mutex
	deliveries := map[string]int{}
	acked := make(chan string, 10)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	c := eventbus.Consumer{Stream: "ORDERS", Durable: "test", Tracer: tracer, Propagator: prop}
	go func() {
		done <- c.Run(runCtx, js, func(ctx context.Context, msg jetstream.Msg) error {
			id := string(msg.Data())
			mu.Lock()
			deliveries[id]++
			n := deliveries[id]
			mu.Unlock()
			switch {
			case id == "poison":
				return eventbus.Permanent(errors.New("cannot decode"))
			case id == "flaky" && n < 3:
				return errors.New("dependency down")
			}
			acked <- id
			return nil
		})
	}()
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case id := <-acked:
			got[id] = true
		case <-ctx.Done():
			t.Fatalf("acked %v before the deadline, want flaky and fine", got)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if deliveries["flaky"] != 3 || deliveries["poison"] != 1 || deliveries["fine"] != 1 {
		t.Fatalf("deliveries %v, want flaky 3, poison 1, fine 1", deliveries)
	}
	for _, s := range recorder.Ended() {
		if s.Name() == "process orders.created" && s.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Fatalf("consumer span in trace %s, want the publisher's %s", s.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
	}
}
