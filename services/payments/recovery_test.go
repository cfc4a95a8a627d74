package payments_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/bank"
	bankhttp "github.com/payonce/payonce/services/bank/http"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	"github.com/payonce/payonce/services/payments"
	paymentsbank "github.com/payonce/payonce/services/payments/bank"
	"github.com/payonce/payonce/services/payments/coordinator"
	"github.com/payonce/payonce/services/payments/postgres"
)

// unreachableFor is a bank that does not answer for some payments (the
// network path to them is down, say) and answers normally for the rest.
type unreachableFor struct {
	payments.Bank
	mu   sync.Mutex
	down map[string]bool // payment id -> no answer
}

func (b *unreachableFor) Charge(ctx context.Context, key string, c payments.BankCharge) (payments.ChargeResult, error) {
	b.mu.Lock()
	down := b.down[c.Reference]
	b.mu.Unlock()
	if down {
		return payments.ChargeResult{}, errors.New("bank: connection timed out")
	}
	return b.Bank.Charge(ctx, key, c)
}

// TestRecoveryBacksOffPerRowAndReachesTheRest: with a batch of 2, the two
// oldest unfinished payments keep failing; the recovery worker backs off
// each of them (growing waits, in the database) and so reaches the third,
// which it finishes with one capture. The old worker retried the same
// oldest batch forever.
func TestRecoveryBacksOffPerRowAndReachesTheRest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	cluster := coordinatortest.Start(t, 3)
	sim := bank.NewSimulator(bank.Faults{}, 1)
	bankSrv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	defer bankSrv.Close()
	ids := []string{payments.PaymentIDFor("shop", "rec-1"), payments.PaymentIDFor("shop", "rec-2"), payments.PaymentIDFor("shop", "rec-3")}
	flaky := &unreachableFor{Bank: paymentsbank.NewClient(bankSrv.URL, 5*time.Second, tracenoop.NewTracerProvider()),
		down: map[string]bool{ids[0]: true, ids[1]: true, ids[2]: true}}
	store := postgres.NewStore(pool, propagation.TraceContext{})
	tracer := tracenoop.NewTracerProvider().Tracer("test")
	svc := payments.NewService(store, coordinator.Locker{Client: lock.NewClient(cluster.URLs()), Wait: 10 * time.Second}, flaky,
		payments.Config{LockTTL: 5 * time.Second}, tracer, nil)
	for i, id := range ids {
		_, err := svc.CreatePayment(ctx, "shop", payments.CreatePaymentRequest{ID: id, CustomerID: "rec-cust", Amount: int64(100 + i), Currency: "EUR", Card: "4242424242424242"})
		if err == nil {
			t.Fatalf("payment %d finished with the bank unreachable", i)
		}
	}
	// The third is reachable again; the first two stay unreachable.
	flaky.mu.Lock()
	delete(flaky.down, ids[2])
	flaky.mu.Unlock()

	const interval = 50 * time.Millisecond
	rec := &payments.Recovery{Service: svc, Store: store, Interval: interval, OlderThan: 0, Batch: 2,
		Tracer: tracer, Meter: noop.NewMeterProvider().Meter("test"), Logger: nil}
	rec.Logger = discardLogger()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitFor(t, ctx, "the third payment to be finished past the two failing ones", func() bool {
		p, err := svc.Payment(ctx, "shop", ids[2])
		return err == nil && p.Status == payments.Succeeded
	})
	// The failing rows wait longer after each try, so they do not take
	// every pass: after 6 tries the next is 50 ms x 2^5 away (checked with a
	// quarter of it, as time passes between the deferral and the check).
	for _, id := range ids[:2] {
		waitFor(t, ctx, "6 tries of "+id, func() bool {
			var tries int
			_ = pool.QueryRow(ctx, `SELECT recovery_attempts FROM payments WHERE id = $1`, id).Scan(&tries)
			return tries >= 6
		})
		var tries int
		var wait time.Duration
		if err := pool.QueryRow(ctx, `SELECT recovery_attempts, recovery_next_at - now() FROM payments WHERE id = $1`, id).Scan(&tries, &wait); err != nil {
			t.Fatal(err)
		}
		// The row was deferred after its latest try: its wait is base x 2^(tries-1).
		if min := interval * time.Duration(1<<(tries-1)) / 4; wait < min {
			t.Errorf("payment %s after %d tries waits %v, want at least %v (a growing back-off)", id, tries, wait, min)
		}
		if p, _ := svc.Payment(ctx, "shop", id); p.Status != payments.Authorizing {
			t.Errorf("payment %s is %s, want still authorizing (the bank never answered)", id, p.Status)
		}
	}
	if got := len(sim.Ledger(ctx, bank.LedgerFilter{Kind: bank.EntryCapture})); got != 1 {
		t.Fatalf("%d captures, want 1 (the reachable payment)", got)
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestParkedRowIsNoLongerDue: a row parked with its reason is left out of
// every later pass (and the reason is kept for an operator), while the
// other unfinished rows stay due.
func TestParkedRowIsNoLongerDue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, propagation.TraceContext{})
	var ids []string
	for i := range 2 {
		p := payments.Payment{ID: payments.PaymentIDFor("shop", "park-"+string(rune('a'+i))), Caller: "shop", CustomerID: "park",
			Amount: 100, Currency: "EUR", Card: "4242424242424242", CardLast4: "4242", Status: payments.Pending, BankKey: "k-" + string(rune('a'+i))}
		if _, _, err := store.CreatePayment(ctx, p, seedFence(p)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	if err := store.ParkRecovery(ctx, payments.RecoverPayment, ids[0], "card number is not valid for this bank"); err != nil {
		t.Fatal(err)
	}
	due, err := store.DuePayments(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0].ID != ids[1] {
		t.Fatalf("due after parking %s: %v; want only %s", ids[0], due, ids[1])
	}
	var reason string
	if err := pool.QueryRow(ctx, `SELECT recovery_park_reason FROM payments WHERE id = $1 AND recovery_parked_at IS NOT NULL`, ids[0]).Scan(&reason); err != nil || reason == "" {
		t.Fatalf("parked row keeps no reason: %q, %v", reason, err)
	}
	// A deferred row is not due until its back-off has passed.
	if _, err := store.DeferRecovery(ctx, payments.RecoverPayment, ids[1], time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	if due, err := store.DuePayments(ctx, 0, 10); err != nil || len(due) != 0 {
		t.Fatalf("due right after a one-hour deferral: %v, %v; want none", due, err)
	}
}

// seedFence is the fence a test writes an unfinished payment under, as a
// per-key lock holder whose lease is the first on the customer.
func seedFence(p payments.Payment) payments.Fence {
	return payments.Fence{Resource: payments.CustomerLock(p.Caller, p.CustomerID), Epoch: 1, Token: 1, LeaseID: "test-seed"}
}

// notOwner is an instance that owns no partition: every charge it is asked
// to settle belongs to another instance.
type notOwner struct{ asked atomic.Int64 }

func (n *notOwner) Acquire(context.Context, string, time.Duration) (payments.Lease, error) {
	n.asked.Add(1)
	return nil, payments.ErrNotOwner
}

// TestRecoveryLeavesAnotherOwnersRowsAlone: with partition leases every
// instance's recovery worker sees every due row, but only the partition's
// owner can finish it. A non-owner's pass must leave the row as it is: had
// it deferred the row, each pass of each non-owner would push the owner's
// next try further out (up to the maximum back-off), and a crashed charge
// would wait minutes to be healed.
func TestRecoveryLeavesAnotherOwnersRowsAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	store := postgres.NewStore(pool, propagation.TraceContext{})
	p := payments.Payment{ID: payments.PaymentIDFor("shop", "elsewhere"), Caller: "shop", CustomerID: "owned-elsewhere",
		Amount: 100, Currency: "EUR", Card: "4242424242424242", CardLast4: "4242", Status: payments.Pending, BankKey: "k-elsewhere"}
	if _, _, err := store.CreatePayment(ctx, p, seedFence(p)); err != nil {
		t.Fatal(err)
	}
	locker := &notOwner{}
	tracer := tracenoop.NewTracerProvider().Tracer("test")
	svc := payments.NewService(store, locker, nil, payments.Config{LockTTL: 5 * time.Second}, tracer, nil)
	rec := &payments.Recovery{Service: svc, Store: store, Interval: 20 * time.Millisecond, OlderThan: 0, Batch: 10,
		Tracer: tracer, Meter: noop.NewMeterProvider().Meter("test"), Logger: discardLogger()}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rec.Run(runCtx) }()
	waitFor(t, ctx, "three passes to reach the row", func() bool { return locker.asked.Load() >= 3 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var tries int
	var deferred bool
	if err := pool.QueryRow(ctx, `SELECT recovery_attempts, recovery_next_at IS NOT NULL FROM payments WHERE id = $1`, p.ID).Scan(&tries, &deferred); err != nil {
		t.Fatal(err)
	}
	if tries != 0 || deferred {
		t.Fatalf("a non-owner's passes deferred the row: %d tries, deferred %v; want it left for its owner", tries, deferred)
	}
	due, err := store.DuePayments(ctx, 0, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("the row is no longer due for its owner: %v, %v", due, err)
	}
}
