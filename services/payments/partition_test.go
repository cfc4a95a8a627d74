package payments_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// partitionRig is one PostgreSQL, one coordinator cluster and one bank,
// shared by the payments instances a test builds on them.
type partitionRig struct {
	pool    *pgxpool.Pool
	store   *postgres.Store
	cluster *coordinatortest.Cluster
	sim     *bank.Simulator
	bank    payments.Bank
}

func newPartitionRig(t *testing.T, ctx context.Context) *partitionRig {
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	sim := bank.NewSimulator(bank.Faults{}, 1)
	bankSrv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	t.Cleanup(bankSrv.Close)
	return &partitionRig{pool: pool, store: postgres.NewStore(pool, propagation.TraceContext{}), cluster: coordinatortest.Start(t, 1),
		sim: sim, bank: paymentsbank.NewClient(bankSrv.URL, 5*time.Second, noop.NewTracerProvider())}
}

// instance is one payments instance under the partition design: its lease
// group, its partition locker (whose ring is owns), and its service.
type instance struct {
	client *lock.Client
	leases *lock.PartitionLeases
	parts  *coordinator.Partitions
	svc    payments.Service
	owns   atomic.Pointer[func(string) bool]
}

func (r *partitionRig) instance(t *testing.T, ctx context.Context, name string, ttl time.Duration, bank payments.Bank, owns func(string) bool) *instance {
	in := &instance{client: lock.NewClient(r.cluster.URLs(), lock.WithOwner(name))}
	in.owns.Store(&owns)
	var err error
	if in.leases, err = in.client.PartitionLeases(ttl); err != nil {
		t.Fatal(err)
	}
	in.parts = &coordinator.Partitions{Leases: in.leases, Owns: func(p string) bool { return (*in.owns.Load())(p) },
		Claim: r.store.ClaimPartition, Drain: 200 * time.Millisecond}
	runCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	go in.leases.Run(runCtx)
	go in.parts.Run(runCtx, 20*time.Millisecond)
	in.svc = payments.NewService(r.store, in.parts, bank, payments.Config{}, noop.NewTracerProvider().Tracer("test"), nil)
	return in
}

// unaware wraps a locker so that its leases never tell the holder they
// ended, like a process frozen past its lease (SIGSTOP, a long GC pause)
// whose timers have not fired yet when it writes: only the fence can stop it.
type unaware struct{ payments.Locker }

func (u unaware) Acquire(ctx context.Context, name string, ttl time.Duration) (payments.Lease, error) {
	l, err := u.Locker.Acquire(ctx, name, ttl)
	if err != nil {
		return nil, err
	}
	return unawareLease{l.(payments.PartitionLease)}, nil
}

type unawareLease struct{ payments.PartitionLease }

func (unawareLease) Context() context.Context { return context.Background() }

// waitServing waits until the instance serves exactly the partitions owns
// gives it.
func (in *instance) waitServing(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond) // polling a condition
	defer poll.Stop()
	for !in.parts.Ready() || len(in.parts.Held()) != want {
		if time.Now().After(deadline) {
			t.Fatalf("serving %d partitions (ready %v), want %d", len(in.parts.Held()), in.parts.Ready(), want)
		}
		<-poll.C
	}
}

func all(string) bool { return true }

// TestPartitionDesignMakesNoCoordinatorRequestPerPayment is the goal
// "zero coordinator requests per payment in steady state", asserted on
// the lock client's request counter: 200 payments (16 at a time, some on
// the same customers) cost no request but the batched renewals, which are
// one request per interval for all 64 partitions.
func TestPartitionDesignMakesNoCoordinatorRequestPerPayment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rig := newPartitionRig(t, ctx)
	// A 10 s lease: on this shared machine (load average above 20) a 3 s lease
	// lapsed once when its renewal was starved, which is the lease doing its
	// job, not what this test measures.
	in := rig.instance(t, ctx, "p1", 10*time.Second, rig.bank, all)
	in.waitServing(t, payments.Partitions)

	requests, renewals := in.client.Requests(), in.leases.Renewals()
	var wg sync.WaitGroup
	var failed atomic.Int64
	work := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req := payments.CreatePaymentRequest{ID: payments.PaymentIDFor("shop", fmt.Sprintf("k-%d", i)),
					CustomerID: fmt.Sprintf("c-%d", i%40), Amount: 100, Currency: "EUR", Card: "4242424242424242"}
				if p, err := in.svc.CreatePayment(ctx, "shop", req); err != nil || p.Status != payments.Succeeded {
					t.Errorf("payment %d: %+v, %v", i, p, err)
					failed.Add(1)
				}
			}
		}()
	}
	for i := range 200 {
		work <- i
	}
	close(work)
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
	sent, renewed := in.client.Requests()-requests, in.leases.Renewals()-renewals
	if sent != renewed {
		t.Fatalf("200 payments: %d coordinator requests, of which %d renewals; want renewals only", sent, renewed)
	}
	if got := len(rig.sim.Ledger(ctx, bank.LedgerFilter{Kind: bank.EntryCapture})); got != 200 {
		t.Fatalf("%d captures at the bank, want 200", got)
	}
	t.Logf("200 payments: %d coordinator requests (all batched renewals of 64 leases)", sent)
}

// TestPartitionHandoffFencesTheOldOwner: the ring moves every partition
// from A to B while A is in the middle of a charge (inside the bank call),
// and that charge never learns its lease ended (see unaware).
// A stops taking new work at once, waits its drain, releases; B acquires
// with strictly higher tokens, claims the fence rows, and its recovery
// finishes the charge. When A's bank call returns, its write is refused
// by PostgreSQL: one charge at the bank, one outcome, B's result stands.
func TestPartitionHandoffFencesTheOldOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rig := newPartitionRig(t, ctx)
	gate := gatedBank{Bank: rig.bank, entered: make(chan struct{}), open: make(chan struct{})}
	a := rig.instance(t, ctx, "a", 2*time.Second, gate, all)
	a.waitServing(t, payments.Partitions)
	req := payments.CreatePaymentRequest{ID: payments.PaymentIDFor("shop", "handoff-1"), CustomerID: "cust-h", Amount: 900, Currency: "EUR", Card: "4242424242424242"}
	partition := payments.CustomerPartitionName("shop", "cust-h")
	oldLease, ok := a.leases.Lease(coordinator.LockName(partition))
	if !ok {
		t.Fatal("A does not hold the customer's partition")
	}
	stalled := payments.NewService(rig.store, unaware{a.parts}, gate, payments.Config{}, noop.NewTracerProvider().Tracer("test"), nil)
	aDone := make(chan error, 1)
	go func() {
		_, err := stalled.CreatePayment(ctx, "shop", req)
		aDone <- err
	}()
	<-gate.entered

	// The ring moves everything to B.
	none := func(string) bool { return false }
	a.owns.Store(&none)
	b := rig.instance(t, ctx, "b", 2*time.Second, rig.bank, all)
	b.waitServing(t, payments.Partitions)
	after := payments.PaymentIDFor("shop", "after")
	if _, err := a.svc.CreatePayment(ctx, "shop", payments.CreatePaymentRequest{ID: after,
		CustomerID: "cust-h", Amount: 1, Currency: "EUR", Card: "4242424242424242"}); !errors.Is(err, payments.ErrNotOwner) {
		t.Fatalf("A after the handoff: %v, want ErrNotOwner", err)
	}
	// The lease is checked before anything is written: A's refused intent
	// left no row (its client retries, at the new owner).
	if _, err := rig.store.Payment(ctx, after); !errors.Is(err, payments.ErrPaymentNotFound) {
		t.Fatalf("A's refused intent: %v, want no payment recorded", err)
	}
	newLease, ok := b.leases.Lease(coordinator.LockName(partition))
	if !ok || newLease.Token() <= oldLease.Token() {
		t.Fatalf("B's lease on %s: %v (token %v), want one above A's %d", partition, ok, newLease, oldLease.Token())
	}
	// B's recovery finishes the charge A left in flight, the only
	// unfinished payment.
	if n, err := b.svc.ResumeUnfinished(ctx, 0, 10); err != nil || n != 1 {
		t.Fatalf("B's recovery: %d, %v; want 1", n, err)
	}
	before := snapshot(t, rig.pool, req.ID)
	close(gate.open)
	if err := <-aDone; !errors.Is(err, payments.ErrFenced) {
		t.Fatalf("A's write after the handoff: %v, want ErrFenced", err)
	}
	if after := snapshot(t, rig.pool, req.ID); after != before {
		t.Fatalf("A's refused write changed something:\nbefore %s\nafter  %s", before, after)
	}
	if got := len(rig.sim.Ledger(ctx, bank.LedgerFilter{Kind: bank.EntryCapture, Reference: req.ID})); got != 1 {
		t.Fatalf("%d captures, want 1", got)
	}
}

// acquireCounter counts the lease acquisitions (POST /v1/locks/{lock}/leases)
// a lock client sends, every attempt counted, and nothing else.
type acquireCounter struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *acquireCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/v1/locks/") && strings.HasSuffix(r.URL.Path, "/leases") {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestDeadOwnersPartitionsAreGrantedAtTheirLeasesExpiry: A holds every
// partition and dies (its renewals stop, nothing is released), and the
// ring gives them all to B at once, while A's leases still have up to a
// TTL to run: the order the default settings give (the member entry,
// MEMBERSHIP_TTL 3 s, runs out before the leases, 6 s). B asks once for
// each partition and waits in its lock's line; the coordinator grants it
// in the log entry that ends A's lease, so the takeover is bounded by
// A's lease and nothing of B's (issue #14). Asserted on what the code
// decides, not on the machine's speed: exactly one acquisition per
// partition (a takeover that polled, or whose wait ran out and asked again,
// sends more), strictly higher tokens, and no claim by B while A's lease is
// still valid by A's own clock. The time is logged.
func TestDeadOwnersPartitionsAreGrantedAtTheirLeasesExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rig := newPartitionRig(t, ctx)
	// A 2 s lease: long enough that a starved renewal on this shared
	// machine does not end A's leases before the test kills A.
	const ttl = 2 * time.Second

	// A, killable: its lease group and its reconcile loop stop on kill
	// without Close, so its leases are left to run out on the coordinator.
	aClient := lock.NewClient(rig.cluster.URLs(), lock.WithOwner("a"))
	aLeases, err := aClient.PartitionLeases(ttl)
	if err != nil {
		t.Fatal(err)
	}
	a := &coordinator.Partitions{Leases: aLeases, Owns: all, Claim: rig.store.ClaimPartition}
	aCtx, kill := context.WithCancel(ctx)
	defer kill()
	go aLeases.Run(aCtx)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // A's reconcile interval
		defer tick.Stop()
		for aCtx.Err() == nil {
			a.Reconcile(aCtx)
			select {
			case <-aCtx.Done():
			case <-tick.C:
			}
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	poll := time.NewTicker(10 * time.Millisecond) // polling a condition
	defer poll.Stop()
	for !a.Ready() || len(a.Held()) != payments.Partitions {
		if time.Now().After(deadline) {
			t.Fatalf("A serves %d partitions, want %d", len(a.Held()), payments.Partitions)
		}
		<-poll.C
	}
	aLease := map[string]*lock.Lease{}
	for p := range payments.Partitions {
		name := payments.PartitionName(p)
		l, ok := aLeases.Lease(coordinator.LockName(name))
		if !ok {
			t.Fatalf("A does not hold %s", name)
		}
		aLease[name] = l
	}

	// B, owning nothing yet; its claims check A's leases first.
	acquires := &acquireCounter{next: http.DefaultTransport}
	bClient := lock.NewClient(rig.cluster.URLs(), lock.WithOwner("b"), lock.WithHTTPClient(&http.Client{Transport: acquires}))
	bLeases, err := bClient.PartitionLeases(ttl)
	if err != nil {
		t.Fatal(err)
	}
	var mine atomic.Bool
	var mu sync.Mutex
	claimedAt := map[string]time.Time{}
	b := &coordinator.Partitions{Leases: bLeases, Owns: func(string) bool { return mine.Load() },
		Claim: func(ctx context.Context, partition string, tok lock.FenceToken) error {
			if aLease[partition].Valid() {
				t.Errorf("B claims %s (token %d) while A's lease (token %d) is valid by A's clock", partition, tok.Token, aLease[partition].Token())
			}
			if tok.Token <= aLease[partition].Token() {
				t.Errorf("B's token %d on %s is not above A's %d", tok.Token, partition, aLease[partition].Token())
			}
			if err := rig.store.ClaimPartition(ctx, partition, tok); err != nil {
				return err
			}
			mu.Lock()
			claimedAt[partition] = time.Now()
			mu.Unlock()
			return nil
		}}
	bCtx, stopB := context.WithCancel(ctx)
	defer stopB()
	go bLeases.Run(bCtx)
	go b.Run(bCtx, 20*time.Millisecond)

	kill()
	killedAt := time.Now()
	mine.Store(true) // the ring drops A at once
	deadline = time.Now().Add(30 * time.Second)
	for len(b.Held()) != payments.Partitions {
		if time.Now().After(deadline) {
			t.Fatalf("B serves %d partitions 30 s after A died, want %d", len(b.Held()), payments.Partitions)
		}
		<-poll.C
	}
	if got := acquires.n.Load(); got != payments.Partitions {
		t.Fatalf("B sent %d acquisitions for %d partitions, want one each: each waits in its lock's line until A's lease ends", got, payments.Partitions)
	}
	first, last := time.Duration(math.MaxInt64), time.Duration(0)
	mu.Lock()
	for _, at := range claimedAt {
		first, last = min(first, at.Sub(killedAt)), max(last, at.Sub(killedAt))
	}
	mu.Unlock()
	t.Logf("A died holding %d partitions (lease TTL %v, renewed every %v); B asked once for each and claimed them %v..%v after",
		payments.Partitions, ttl, ttl/3, first.Round(time.Millisecond), last.Round(time.Millisecond))
}
