package outbox_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestRelayCrashAfterPublishDoesNotDuplicate stands for the relay dying
// after JetStream accepted a batch and before the rows were marked: the next
// run publishes the same rows again, and JetStream's de-duplication (same
// Nats-Msg-Id) stores each event once.
func TestRelayCrashAfterPublishDoesNotDuplicate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "orders"); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	prop := propagation.TraceContext{}
	tracer := tp.Tracer("test")

	// Three events written by a traced request, and one in a transaction
	// that rolls back, which must never be published.
	reqCtx, reqSpan := tracer.Start(ctx, "POST /v1/orders")
	tx, _ := pool.Begin(ctx)
	for range 3 {
		if err := outbox.Write(reqCtx, tx, prop, "orders.created", uuid.NewString(), map[string]string{"k": "v"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	reqSpan.End()
	tx, _ = pool.Begin(ctx)
	if err := outbox.Write(ctx, tx, prop, "orders.created", uuid.NewString(), "rolled back"); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)

	crash := true
	relay := outbox.NewRelay(outbox.Relay{
		Pool:       pool,
		Publisher:  eventbus.Publisher{JS: js, Tracer: tracer, Propagator: prop},
		Propagator: prop,
		Tracer:     tracer,
		AfterPublish: func([]string) error {
			if crash {
				return errors.New("simulated crash between publish and mark")
			}
			return nil
		},
	})
	if _, err := relay.RelayOnce(ctx); err == nil {
		t.Fatal("the simulated crash did not surface")
	}
	var unpublished int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&unpublished)
	if unpublished != 3 {
		t.Fatalf("%d unpublished rows after the crash, want 3", unpublished)
	}

	crash = false
	n, err := relay.RelayOnce(ctx)
	if err != nil || n != 3 {
		t.Fatalf("second run published %d, %v; want 3", n, err)
	}
	stream, _ := js.Stream(ctx, "ORDERS")
	info, _ := stream.Info(ctx)
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages after a re-publish, want 3 (duplicates dropped)", info.State.Msgs)
	}
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&unpublished)
	if unpublished != 0 {
		t.Fatalf("%d rows still unpublished", unpublished)
	}
	if n, _ := relay.RelayOnce(ctx); n != 0 {
		t.Fatalf("a third run published %d rows again", n)
	}

	// The publish spans continue the request's trace.
	publishes := 0
	for _, s := range recorder.Ended() {
		if s.Name() == "publish orders.created" {
			publishes++
			if s.SpanContext().TraceID() != reqSpan.SpanContext().TraceID() {
				t.Fatalf("publish span in trace %s, want the request's %s", s.SpanContext().TraceID(), reqSpan.SpanContext().TraceID())
			}
		}
	}
	if publishes != 6 {
		t.Fatalf("%d publish spans, want 6 (3 before the crash, 3 after)", publishes)
	}
}
