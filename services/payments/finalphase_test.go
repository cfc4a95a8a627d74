package payments_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/bank"
	bankhttp "github.com/payonce/payonce/services/bank/http"
	"github.com/payonce/payonce/services/payments"
	paymentsbank "github.com/payonce/payonce/services/payments/bank"
	"github.com/payonce/payonce/services/payments/postgres"
)

// recordingLocker grants a per-key lease (the lock design's shape: a fence
// of the customer, checked by FenceLease) and records when it is released.
type recordingLocker struct{ released atomic.Int32 }

func (l *recordingLocker) Acquire(context.Context, string, time.Duration) (payments.Lease, error) {
	return &recordedLease{l: l}, nil
}

type recordedLease struct{ l *recordingLocker }

func (*recordedLease) Token() uint64                   { return 1 }
func (*recordedLease) Epoch() uint64                   { return 1 }
func (*recordedLease) ID() string                      { return "lease-1" }
func (*recordedLease) Context() context.Context        { return context.Background() }
func (r *recordedLease) Release(context.Context) error { r.l.released.Add(1); return nil }

// TestTheLeaseCoversTheChargeUntilItsAnswerIsDurable: behind the API (a
// request holding an idempotency key) the charge's last writes are the
// key's final phase, which commits with the stored response after the
// service returns. Until then the customer's lease is not released (a
// release is a network call under the lock design, which the open
// transaction must not wait on, and the lease must cover the writes until
// they are durable) and no other connection sees the payment succeeded.
// When the response is stored, one commit makes the payment, its outbox
// event and the answer durable (one transaction id on all three rows), and
// only then is the lease released.
func TestTheLeaseCoversTheChargeUntilItsAnswerIsDurable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	sim := bank.NewSimulator(bank.Faults{}, 1)
	bankSrv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	defer bankSrv.Close()
	store := postgres.NewStore(pool, propagation.TraceContext{})
	locker := &recordingLocker{}
	svc := payments.NewService(store, locker, paymentsbank.NewClient(bankSrv.URL, 5*time.Second, noop.NewTracerProvider()),
		payments.Config{LockTTL: 5 * time.Second}, noop.NewTracerProvider().Tracer("test"), nil)

	keys := idempotency.NewStore(pool, idempotency.Config{})
	attempt, err := keys.Begin(ctx, "shop", "final-1", idempotency.FingerprintOf("POST", "/v1/payments", nil, []byte(`{}`)))
	if err != nil || attempt.Key == nil {
		t.Fatalf("claim the key: %+v %v", attempt, err)
	}
	// A failing check below must not leave the final phase open (its
	// connection would keep the pool from closing).
	t.Cleanup(func() { _ = attempt.Key.Release(context.Background()) })
	req := payments.CreatePaymentRequest{ID: payments.PaymentIDFor("shop", "final-1"), CustomerID: "cust-final", Amount: 990, Currency: "EUR", Card: "4242424242424242"}
	p, err := svc.CreatePayment(idempotency.NewContext(ctx, attempt.Key), "shop", req)
	if err != nil || p.Status != payments.Succeeded {
		t.Fatalf("create: %+v %v", p, err)
	}
	status := func() string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT status FROM payments WHERE id = $1`, p.ID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if n := locker.released.Load(); n != 0 {
		t.Fatalf("the lease was released %d times before the charge's last writes committed", n)
	}
	if s := status(); s != string(payments.Authorizing) {
		t.Fatalf("another connection sees the payment %s before its answer is stored; want authorizing (the final phase is open)", s)
	}

	if err := attempt.Key.Complete(ctx, idempotency.Response{Status: http.StatusCreated, Body: []byte(`{"id":"` + p.ID + `"}`)}); err != nil {
		t.Fatal(err)
	}
	if n := locker.released.Load(); n != 1 {
		t.Fatalf("the lease was released %d times after the commit, want once", n)
	}
	if s := status(); s != string(payments.Succeeded) {
		t.Fatalf("after the commit another connection sees %s, want succeeded", s)
	}
	var same bool
	if err := pool.QueryRow(ctx, `SELECT p.xmin = k.xmin AND p.xmin = o.xmin
		FROM payments p, idempotency_keys k, outbox o
		WHERE p.id = $1 AND k.scope = 'shop' AND k.key = 'final-1' AND o.subject = 'payments.succeeded'`, p.ID).Scan(&same); err != nil {
		t.Fatal(err)
	}
	if !same {
		t.Fatal("the payment, its outbox event and the stored answer were not written by one transaction")
	}
}
