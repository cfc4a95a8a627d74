package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

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

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// pausedHolder takes a lock straight from the coordinator's API and then
// behaves like a process frozen by a long GC pause or a stopped VM: it
// sends no keepalive, so the coordinator expires the lease through its
// log, and it never notices (its Context is never cancelled). Only the
// fence can stop what it writes when it wakes.
type pausedHolder struct {
	coordinatorURL string
	ttl            time.Duration
	token          chan uint64
}

func (h pausedHolder) Acquire(ctx context.Context, name string, _ time.Duration) (payments.Lease, error) {
	body, _ := json.Marshal(map[string]any{"request_id": uuid.NewString(), "ttl_ms": h.ttl.Milliseconds()})
	resp, err := http.Post(h.coordinatorURL+"/v1/locks/"+url.PathEscape(coordinator.LockName(name))+"/leases", "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lease struct {
		LeaseID string `json:"lease_id"`
		Token   uint64 `json:"token"`
		Epoch   uint64 `json:"epoch"`
	}
	if resp.StatusCode/100 != 2 || json.NewDecoder(resp.Body).Decode(&lease) != nil {
		return nil, fmt.Errorf("acquire: %s", resp.Status)
	}
	h.token <- lease.Token
	return frozenLease{id: lease.LeaseID, token: lease.Token, epoch: lease.Epoch}, nil
}

type frozenLease struct {
	id           string
	token, epoch uint64
}

func (l frozenLease) Token() uint64                 { return l.token }
func (l frozenLease) Epoch() uint64                 { return l.epoch }
func (l frozenLease) ID() string                    { return l.id }
func (l frozenLease) Context() context.Context      { return context.Background() }
func (l frozenLease) Release(context.Context) error { return nil }

// gatedBank holds the first charge until the test opens the gate: the
// holder is "paused" in the middle of its bank call.
type gatedBank struct {
	payments.Bank
	entered chan struct{}
	open    chan struct{}
}

func (b gatedBank) Charge(ctx context.Context, key string, c payments.BankCharge) (payments.ChargeResult, error) {
	close(b.entered)
	<-b.open
	return b.Bank.Charge(ctx, key, c)
}

// TestStaleHolderIsFencedAndTheChargeCompletesOnce is the stale-holder
// scenario on the payments path: holder A (token t) is paused mid-charge
// past its lease; the recovery worker B gets the lock (token t' > t) and
// finishes the charge; when A wakes, its write with t is refused by
// Postgres and changes nothing. One payment, one bank charge, one event.
func TestStaleHolderIsFencedAndTheChargeCompletesOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	cluster := coordinatortest.Start(t, 3)
	sim := bank.NewSimulator(bank.Faults{}, 1)
	bankSrv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	defer bankSrv.Close()
	realBank := paymentsbank.NewClient(bankSrv.URL, 5*time.Second, noop.NewTracerProvider())
	store := postgres.NewStore(pool, propagation.TraceContext{})
	tracer := noop.NewTracerProvider().Tracer("test")

	holderA := pausedHolder{coordinatorURL: cluster.URL(cluster.WaitLeader(10 * time.Second)), ttl: 300 * time.Millisecond, token: make(chan uint64, 1)}
	gate := gatedBank{Bank: realBank, entered: make(chan struct{}), open: make(chan struct{})}
	a := payments.NewService(store, holderA, gate, payments.Config{LockTTL: 300 * time.Millisecond}, tracer, nil)
	b := payments.NewService(store, coordinator.Locker{Client: lock.NewClient(cluster.URLs()), Wait: 10 * time.Second}, realBank,
		payments.Config{LockTTL: 5 * time.Second}, tracer, nil)

	req := payments.CreatePaymentRequest{ID: payments.PaymentIDFor("shop", "stale-1"), CustomerID: "cust-stale", Amount: 777, Currency: "EUR", Card: "4242424242424242"}
	aDone := make(chan error, 1)
	go func() {
		_, err := a.CreatePayment(ctx, "shop", req)
		aDone <- err
	}()
	tokenA := <-holderA.token
	select {
	case <-gate.entered:
	case err := <-aDone:
		t.Fatalf("A finished before reaching the bank: %v", err)
	}

	// A is "paused" inside the bank call. B, the recovery worker, waits for
	// A's lease to expire on the coordinator, takes the lock and finishes.
	n, err := b.ResumeUnfinished(ctx, 0, 10)
	if err != nil || n != 1 {
		t.Fatalf("recovery finished %d, %v; want 1", n, err)
	}
	p, err := b.Payment(ctx, "shop", req.ID)
	if err != nil || p.Status != payments.Succeeded {
		t.Fatalf("after recovery: %+v %v", p, err)
	}
	var fenceToken uint64
	if err := pool.QueryRow(ctx, `SELECT token FROM fence_tokens WHERE resource = 'customer:shop:cust-stale'`).Scan(&fenceToken); err != nil {
		t.Fatal(err)
	}
	if fenceToken <= tokenA {
		t.Fatalf("fence holds token %d, want one above A's %d", fenceToken, tokenA)
	}
	before := snapshot(t, pool, req.ID)

	// A wakes up and tries to record its result with the stale token.
	close(gate.open)
	err = <-aDone
	if !errors.Is(err, payments.ErrFenced) {
		t.Fatalf("A's write: %v, want ErrFenced", err)
	}
	if after := snapshot(t, pool, req.ID); after != before {
		t.Fatalf("A's refused write changed the payment:\nbefore %s\nafter  %s", before, after)
	}
	if got := len(sim.Ledger(ctx, bank.LedgerFilter{Kind: bank.EntryCapture, Reference: req.ID})); got != 1 {
		t.Fatalf("%d bank captures, want 1", got)
	}
	var events int
	_ = pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE payload->>'payment_id' = $1`, req.ID).Scan(&events)
	if events != 1 {
		t.Fatalf("%d outcome events, want 1", events)
	}
}

// snapshot renders the payment row and the fence for comparison.
func snapshot(t *testing.T, pool *pgxpool.Pool, id string) string {
	t.Helper()
	var row string
	err := pool.QueryRow(context.Background(), `SELECT (SELECT row_to_json(p)::text FROM payments p WHERE id = $1) ||
		(SELECT string_agg(row_to_json(f)::text, ',') FROM fence_tokens f)`, id).Scan(&row)
	if err != nil {
		t.Fatal(err)
	}
	return row
}
