package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/localnats"
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

func relayEnv(t *testing.T, ctx context.Context) (*pgxpool.Pool, jetstream.JetStream, *outbox.Relay) {
	t.Helper()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "orders"); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	tracer := noop.NewTracerProvider().Tracer("t")
	prop := propagation.TraceContext{}
	relay := outbox.NewRelay(outbox.Relay{
		Pool: pool, Publisher: eventbus.Publisher{JS: js, Tracer: tracer, Propagator: prop}, Propagator: prop, Tracer: tracer,
	})
	return pool, js, relay
}

func writeRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool, subjects ...string) []string {
	t.Helper()
	var ids []string
	for _, subject := range subjects {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id := uuid.NewString()
		if err := outbox.Write(ctx, tx, propagation.TraceContext{}, subject, id, map[string]string{"id": id}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestUnpublishableRowIsParkedNotBlocking: the oldest row can never be
// published (no stream holds its subject); it is parked with the reason,
// and the rows behind it go out in the same run. No transaction is open
// while the relay publishes.
func TestUnpublishableRowIsParkedNotBlocking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, js, relay := relayEnv(t, ctx)
	ids := writeRows(t, ctx, pool, "inventory.reserved", "orders.created", "orders.created")
	relay.AfterPublish = func([]string) error {
		var open int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&open)
		if err != nil || open != 0 {
			return fmt.Errorf("%d transactions open while publishing (%v)", open, err)
		}
		return nil
	}
	n, err := relay.RelayOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RelayOnce = %d, %v; want the 2 rows behind the bad one", n, err)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT park_reason FROM outbox WHERE id = $1 AND parked_at IS NOT NULL AND published_at IS NULL`, ids[0]).Scan(&reason); err != nil {
		t.Fatalf("bad row not parked: %v", err)
	}
	if !strings.Contains(reason, "inventory.reserved") {
		t.Fatalf("park reason %q does not say why", reason)
	}
	stream, _ := js.Stream(ctx, "ORDERS")
	if info, _ := stream.Info(ctx); info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages, want 2", info.State.Msgs)
	}
	if n, err := relay.RelayOnce(ctx); n != 0 || err != nil {
		t.Fatalf("next run = %d, %v; want nothing (the parked row is not retried)", n, err)
	}
}

// TestRelayDuringNATSOutageMarksNothing: while JetStream does not answer,
// no row is counted published (only the stream's ack counts), and every
// row goes out once it is back.
func TestRelayDuringNATSOutageMarksNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "orders"); err != nil {
		t.Fatal(err)
	}
	srv, err := localnats.Start(localnats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}
	tracer := noop.NewTracerProvider().Tracer("t")
	prop := propagation.TraceContext{}
	relay := outbox.NewRelay(outbox.Relay{Pool: pool, Publisher: eventbus.Publisher{JS: js, Tracer: tracer, Propagator: prop}, Propagator: prop, Tracer: tracer})
	writeRows(t, ctx, pool, "orders.created", "orders.created", "orders.created")
	srv.Kill()
	pubCtx, pubCancel := context.WithTimeout(ctx, 2*time.Second)
	if n, err := relay.RelayOnce(pubCtx); err == nil || n != 0 {
		t.Fatalf("RelayOnce with NATS down = %d, %v; want an error and nothing published", n, err)
	}
	pubCancel()
	var unpublished, parked int
	_ = pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL) FROM outbox`).Scan(&unpublished, &parked)
	if unpublished != 3 || parked != 0 {
		t.Fatalf("%d unpublished, %d parked after the outage; want 3 and 0", unpublished, parked)
	}
	if err := srv.Restart(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	total := 0
	deadline := time.Now().Add(30 * time.Second)
	for total < 3 && time.Now().Before(deadline) {
		n, _ := relay.RelayOnce(ctx)
		total += n
	}
	if total != 3 {
		t.Fatalf("published %d after NATS came back, want 3", total)
	}
}

// TestPruneKeepsWhatARedeliveryNeeds: published outbox rows go after their
// retention; inbox ids stay for InboxRetention (longer than any
// redelivery or replay can arrive), then go; unpublished and parked rows
// are never pruned.
func TestPruneKeepsWhatARedeliveryNeeds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, _, relay := relayEnv(t, ctx)
	if outbox.InboxRetention < 2*eventbus.MaxAge {
		t.Fatalf("InboxRetention %v is shorter than a message can still arrive (2 x MaxAge)", outbox.InboxRetention)
	}
	ids := writeRows(t, ctx, pool, "orders.created", "orders.created", "orders.created", "orders.created")
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE outbox SET published_at = now() - interval '8 days' WHERE id = $1`, ids[0])                  // old: pruned
	exec(`UPDATE outbox SET published_at = now() - interval '1 day' WHERE id = $1`, ids[1])                   // recent: kept
	exec(`UPDATE outbox SET parked_at = now() - interval '30 days', park_reason = 'x' WHERE id = $1`, ids[2]) // parked: kept
	exec(`INSERT INTO inbox (consumer, message_id, subject, received_at) VALUES
		('c', 'old', 's', now() - interval '16 days'), ('c', 'within', 's', now() - interval '14 days')`)
	o, i, err := relay.Prune(ctx)
	if err != nil || o != 1 || i != 1 {
		t.Fatalf("Prune = %d outbox, %d inbox, %v; want 1 and 1", o, i, err)
	}
	var left int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&left)
	if left != 3 {
		t.Fatalf("%d outbox rows left, want 3 (recent, parked, unpublished)", left)
	}
	var kept string
	if err := pool.QueryRow(ctx, `SELECT message_id FROM inbox`).Scan(&kept); err != nil || kept != "within" {
		t.Fatalf("inbox kept %q, %v; want the id still within retention", kept, err)
	}
}

// TestOversizedRowIsParkedAndCounted: the one way a service's own event
// can never be published is a payload larger than the server takes
// (max_payload, 1 MB by default); every subject a service writes has a
// stream. The relay parks that row with the reason and publishes the row
// behind it, and the outbox metrics show the lag while rows wait, then
// nothing pending and one parked row.
func TestOversizedRowIsParkedAndCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, js, relay := relayEnv(t, ctx)
	reader := sdkmetric.NewManualReader()
	if err := outbox.RegisterMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"), pool); err != nil {
		t.Fatal(err)
	}
	gauges := func() map[string]float64 {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch g := m.Data.(type) {
				case metricdata.Gauge[int64]:
					out[m.Name] = float64(g.DataPoints[0].Value)
				case metricdata.Gauge[float64]:
					out[m.Name] = g.DataPoints[0].Value
				}
			}
		}
		return out
	}

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := uuid.NewString()
	if err := outbox.Write(ctx, tx, propagation.TraceContext{}, "orders.created", big, map[string]string{"note": strings.Repeat("x", 2<<20)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE outbox SET created_at = now() - interval '42 seconds' WHERE id = $1`, big); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	writeRows(t, ctx, pool, "orders.created")
	if g := gauges(); g["payonce.outbox.pending"] != 2 || g["payonce.outbox.oldest_pending.age"] < 42 || g["payonce.outbox.parked"] != 0 {
		t.Fatalf("before the relay: %v; want 2 pending, the oldest at least 42 s old, none parked", g)
	}

	n, err := relay.RelayOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("RelayOnce = %d, %v; want the 1 row behind the oversized one", n, err)
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT park_reason FROM outbox WHERE id = $1 AND parked_at IS NOT NULL AND published_at IS NULL`, big).Scan(&reason); err != nil {
		t.Fatalf("oversized row not parked: %v", err)
	}
	if !strings.Contains(reason, "exceeds") {
		t.Fatalf("park reason %q does not say why", reason)
	}
	stream, _ := js.Stream(ctx, "ORDERS")
	if info, _ := stream.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
	if g := gauges(); g["payonce.outbox.pending"] != 0 || g["payonce.outbox.oldest_pending.age"] != 0 || g["payonce.outbox.parked"] != 1 {
		t.Fatalf("after the relay: %v; want nothing pending and 1 parked", g)
	}
}
