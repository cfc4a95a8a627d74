package integration

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
)

// TestFoundation proves the ground everything else stands on: a real
// PostgreSQL takes every service's migrations (and a second run changes
// nothing), and a real JetStream message carries trace context from the
// publisher's span to the consumer's.
func TestFoundation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, service := range migrations.Services() {
		t.Run("migrate "+service, func(t *testing.T) {
			dbURL := testenv.NewDatabase(t)
			first, err := migrations.Up(ctx, dbURL, service)
			if err != nil {
				t.Fatal(err)
			}
			if len(first) == 0 {
				t.Fatal("first run applied no migration")
			}
			second, err := migrations.Up(ctx, dbURL, service)
			if err != nil {
				t.Fatal(err)
			}
			if len(second) != 0 {
				t.Fatalf("second run applied %v, want nothing", second)
			}
			current, latest, err := migrations.Version(ctx, dbURL, service)
			if err != nil {
				t.Fatal(err)
			}
			if current != latest || current != first[len(first)-1].Version {
				t.Fatalf("version current=%d latest=%d, want both %d", current, latest, first[len(first)-1].Version)
			}
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for _, table := range []string{"outbox", "inbox"} {
				var exists bool
				if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
					t.Fatal(err)
				}
				if !exists {
					t.Errorf("table %s missing after migration", table)
				}
			}
		})
	}

	t.Run("trace context over jetstream", func(t *testing.T) {
		recorder := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
		defer tp.Shutdown(ctx)
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		tracer := tp.Tracer("foundation-test")

		nc, err := nats.Connect(testenv.NATS(t))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FOUNDATION", Subjects: []string{"foundation.>"}})
		if err != nil {
			t.Fatal(err)
		}

		pubCtx, pubSpan := tracer.Start(ctx, "publish foundation.ping", trace.WithSpanKind(trace.SpanKindProducer))
		msg := nats.NewMsg("foundation.ping")
		msg.Data = []byte(`{"hello":"world"}`)
		msg.Header.Set(jetstream.MsgIDHeader, "ping-1")
		telemetry.InjectNATS(pubCtx, prop, msg)
		if _, err := js.PublishMsg(pubCtx, msg); err != nil {
			t.Fatal(err)
		}
		pubSpan.End()

		cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "foundation", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		got, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		consCtx := telemetry.ExtractNATS(ctx, prop, got.Headers())
		_, consSpan := tracer.Start(consCtx, "consume foundation.ping", trace.WithSpanKind(trace.SpanKindConsumer))
		if err := got.Ack(); err != nil {
			t.Fatal(err)
		}
		consSpan.End()

		spans := recorder.Ended()
		if len(spans) != 2 {
			t.Fatalf("recorded %d spans, want 2", len(spans))
		}
		pub, con := spans[0], spans[1]
		if con.SpanContext().TraceID() != pub.SpanContext().TraceID() {
			t.Fatalf("consumer trace %s, publisher trace %s: want the same", con.SpanContext().TraceID(), pub.SpanContext().TraceID())
		}
		if con.Parent().SpanID() != pub.SpanContext().SpanID() {
			t.Fatalf("consumer's parent span %s, want the publisher's %s", con.Parent().SpanID(), pub.SpanContext().SpanID())
		}
	})
}
