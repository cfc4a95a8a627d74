package postgres_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/orders"
	"github.com/payonce/payonce/services/orders/postgres"
)

// TestOrderCreationIsOneCommitWithItsAnswer: behind the API a new order is
// the key's claim and one more commit, which carries the order, its
// orders.created outbox row and the stored response (FinalTx). Until the
// response is stored no other connection sees the order, and the relay is
// not nudged (it would find nothing); then one transaction id is on all
// three rows and the nudge comes once. If the request fails before the
// response (a 5xx), the order is kept and the key stays at its point.
func TestOrderCreationIsOneCommitWithItsAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "orders"); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, propagation.TraceContext{})
	nudges := 0
	store.OnOutboxWrite = func() { nudges++ }
	keys := idempotency.NewStore(pool, idempotency.Config{})

	create := func(key, id string) *idempotency.Key {
		t.Helper()
		attempt, err := keys.Begin(ctx, "shop", key, idempotency.FingerprintOf("POST", "/v1/orders", nil, []byte(key)))
		if err != nil || attempt.Key == nil {
			t.Fatalf("claim %s: %+v %v", key, attempt, err)
		}
		// A failing check must not leave the phase open (the pool could not close).
		t.Cleanup(func() { _ = attempt.Key.Release(context.Background()) })
		o := orders.Order{ID: id, Caller: "shop", CustomerID: "alice", Currency: "EUR", Total: 100,
			Status: orders.PendingPayment, Card: "4242424242424242", Lines: []orders.Line{{SKU: "cup", Name: "Cup", Quantity: 1, UnitPrice: 100, Amount: 100}}}
		ev := events.OrderCreatedEvent{EventID: id, OrderID: id, Caller: "shop", CustomerID: "alice", Amount: 100, Currency: "EUR", Card: o.Card}
		if _, err := store.CreateOrder(idempotency.NewContext(ctx, attempt.Key), o, ev); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		return attempt.Key
	}
	visible := func(id string) bool {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	const first = "7d2f0c1e-6a43-4f5e-9b1a-2c3d4e5f6a70"
	key := create("order-final-1", first)
	if visible(first) || nudges != 0 {
		t.Fatalf("before the response is stored: order visible %v, relay nudged %d times; want neither", visible(first), nudges)
	}
	if err := key.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if !visible(first) || nudges != 1 {
		t.Fatalf("after the commit: order visible %v, relay nudged %d times; want it visible and one nudge", visible(first), nudges)
	}
	var same bool
	if err := pool.QueryRow(ctx, `SELECT o.xmin = k.xmin AND o.xmin = x.xmin
		FROM orders o, idempotency_keys k, outbox x
		WHERE o.id = $1 AND k.scope = 'shop' AND k.key = 'order-final-1' AND x.subject = 'orders.created'`, first).Scan(&same); err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Fatal("the order, its event and the stored answer were not written by one transaction")
	}

	// A 5xx after the write (the middleware's Release): the order stands,
	// and the retry finds the key at order_created, not started afresh.
	const second = "7d2f0c1e-6a43-4f5e-9b1a-2c3d4e5f6a71"
	key = create("order-final-2", second)
	if err := key.Release(ctx); err != nil {
		t.Fatal(err)
	}
	var point string
	if err := pool.QueryRow(ctx, `SELECT recovery_point FROM idempotency_keys WHERE key = 'order-final-2' AND holder IS NULL`).Scan(&point); err != nil {
		t.Fatal(err)
	}
	if !visible(second) || point != "order_created" || nudges != 2 {
		t.Fatalf("after a 5xx: order visible %v, key at %q, nudges %d; want the order kept, the key at order_created, a nudge", visible(second), point, nudges)
	}
}
