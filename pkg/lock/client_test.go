package lock_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

func TestAcquireHeldRelease(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx := context.Background()
	a := lock.NewClient(c.URLs(), lock.WithOwner("a"))
	b := lock.NewClient(c.URLs(), lock.WithOwner("b"))
	la, err := a.Acquire(ctx, "orders-7", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(ctx, "orders-7", time.Second); !errors.Is(err, lock.ErrLockHeld) {
		t.Fatalf("second acquire: %v, want ErrLockHeld", err)
	}
	// B waits in line and gets the lock when A releases.
	type res struct {
		l   *lock.Lease
		err error
	}
	got := make(chan res, 1)
	go func() {
		l, err := b.Acquire(ctx, "orders-7", time.Second, lock.Wait(5*time.Second))
		got <- res{l, err}
	}()
	if err := la.Release(ctx); err != nil {
		t.Fatalf("release: %v", err)
	}
	select {
	case <-la.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
	if !errors.Is(la.Err(), lock.ErrReleased) {
		t.Fatalf("Err after release: %v", la.Err())
	}
	r := <-got
	if r.err != nil || r.l.Token() <= la.Token() {
		t.Fatalf("waiting acquire: %v, token %v vs %d", r.err, r.l, la.Token())
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseSurvivesLeaderKill(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx := context.Background()
	cl := lock.NewClient(c.URLs())
	// A lease is meant to be several election timeouts long (200ms in the
	// test cluster); 3s also leaves room for a loaded CI machine.
	const ttl = 3 * time.Second
	l, err := cl.Acquire(ctx, "survivor", ttl)
	if err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	c.Kill(c.WaitLeader(10 * time.Second))
	select {
	case <-l.Done():
		t.Fatalf("lease lost %v after the leader was killed: %v", time.Since(killedAt), l.Err())
	case <-time.After(2 * ttl): // keepalives must carry it across the election
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("release after the leader change: %v", err)
	}
}

// pausable is an HTTP transport that can freeze, like a process stopped by
// a long GC pause or a VM migration: requests wait until it thaws.
type pausable struct {
	mu     sync.Mutex
	paused chan struct{} // non-nil while paused; closed to thaw
}

func (p *pausable) pause() { p.mu.Lock(); p.paused = make(chan struct{}); p.mu.Unlock() }
func (p *pausable) thaw()  { p.mu.Lock(); close(p.paused); p.paused = nil; p.mu.Unlock() }

func (p *pausable) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestStaleHolderIsFencedOff is the scenario the fence exists for: A holds
// the lock with token t and freezes past its TTL; B is granted t' > t and
// writes; A wakes, still believing it may write, and Postgres refuses it.
func TestStaleHolderIsFencedOff(t *testing.T) {
	ctx := context.Background()
	c := coordinatortest.Start(t, 3)
	pool := fencePool(t)
	if _, err := pool.Exec(ctx, `CREATE TABLE charges (customer text, amount_minor bigint, token bigint)`); err != nil {
		t.Fatal(err)
	}
	write := func(l *lock.Lease, amount int64) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := lock.Fence(ctx, tx, "customer-42", l.Token()); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO charges VALUES ('customer-42', $1, $2)`, amount, int64(l.Token()))
			return err
		})
	}

	freezeA := &pausable{}
	a := lock.NewClient(c.URLs(), lock.WithOwner("a"), lock.WithHTTPClient(&http.Client{Transport: freezeA}))
	b := lock.NewClient(c.URLs(), lock.WithOwner("b"))
	const ttl = time.Second
	la, err := a.Acquire(ctx, "customer-42", ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(la, 100); err != nil {
		t.Fatalf("A's write while holding: %v", err)
	}

	freezeA.pause() // A's keepalives stop getting through
	// Done closes before the server can give the lock away...
	select {
	case <-la.Done():
	case <-time.After(2 * ttl):
		t.Fatal("A's Done did not close although its keepalives stopped")
	}
	doneAt := time.Now()
	st, err := http.Get(c.URL(c.WaitLeader(10*time.Second)) + "/v1/locks/customer-42")
	if err != nil || st.StatusCode != http.StatusOK {
		t.Fatalf("lock state right after A's Done: %v %v", st, err)
	}
	st.Body.Close()
	t.Logf("A's Done closed; the server still held A's lease %v later", time.Since(doneAt))

	// ...and B gets it only after A's lease expired on the server.
	lb, err := b.Acquire(ctx, "customer-42", ttl, lock.Wait(5*time.Second))
	if err != nil {
		t.Fatalf("B acquire: %v", err)
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("B's token %d not above A's %d", lb.Token(), la.Token())
	}
	if err := write(lb, 200); err != nil {
		t.Fatalf("B's write: %v", err)
	}

	freezeA.thaw() // A wakes up and, ignoring Done, writes with its old token
	if err := write(la, 999); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("A's stale write: %v, want ErrStaleToken", err)
	}
	var n, sum int64
	if err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount_minor),0) FROM charges`).Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 2 || sum != 300 {
		t.Fatalf("charges: %d rows summing %d, want A's 100 and B's 200 only", n, sum)
	}
	if err := la.Release(ctx); !errors.Is(err, lock.ErrLeaseLost) {
		t.Fatalf("A's release of a lost lease: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLateGrantGetsItsFullTTL: an acquire that queued for more than a third
// of its TTL is kept alive once before Acquire returns, so the holder gets
// a full TTL from the grant instead of what is left of one counted from the
// request (a prompt grant skips that keepalive; the background one at ttl/3
// comes in time).
func TestLateGrantGetsItsFullTTL(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx := context.Background()
	cl := lock.NewClient(c.URLs())
	// Long enough that the confirming keepalive, sent at the grant, lands
	// within the lease on a loaded machine: with 600 ms, at load 20, it
	// arrived after the server had expired the lease, and the client
	// rightly refused it ("granted too late to be safe").
	const ttl = 2 * time.Second
	holder, err := cl.Acquire(ctx, "late", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(holder.Deadline()); d < 8*time.Second {
		t.Fatalf("a prompt grant's deadline is %v away, want about the TTL", d)
	}
	// Release once the waiter is queued and has waited more than ttl/3.
	asked, got := acquireBehind(t, c, cl, "late", ttl, ttl/2)
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("queued acquire: %v", r.err)
	}
	defer r.l.Release(ctx)
	// Without the keepalive the deadline would be asked+ttl-margin, which
	// is already close or past; with it, at least ttl-margin from the grant.
	if !r.l.Deadline().After(asked.Add(ttl)) {
		t.Fatalf("late grant's deadline %v after asking, want beyond the TTL %v", r.l.Deadline().Sub(asked), ttl)
	}
}

// TestGrantAfterLongerThanTheTTLIsConfirmed: a waiter queued for longer
// than its own TTL still gets a usable lease. Counted from the request, its
// deadline is already past when the grant arrives; the confirming
// keepalive gives it a full TTL from a known time instead of abandoning a
// grant the server holds for it (a retry would queue behind that
// abandoned grant for a whole TTL, and again, without end).
func TestGrantAfterLongerThanTheTTLIsConfirmed(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx := context.Background()
	cl := lock.NewClient(c.URLs())
	const ttl = 300 * time.Millisecond
	holder, err := cl.Acquire(ctx, "longwait", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Release once the waiter is queued and has waited twice its TTL.
	asked, got := acquireBehind(t, c, cl, "longwait", ttl, 2*ttl)
	released := time.Now()
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("acquire that waited %v with a TTL of %v: %v", time.Since(asked), ttl, r.err)
	}
	if r.l.Token() <= holder.Token() {
		t.Fatalf("token %d after %d", r.l.Token(), holder.Token())
	}
	if !r.l.Deadline().After(released) {
		t.Fatalf("deadline %v is before the grant (released at %v)", r.l.Deadline(), released)
	}
	if err := r.l.Release(ctx); err != nil {
		t.Fatalf("release of the confirmed lease: %v", err)
	}
	// The lock is free again at once: nothing was left held behind.
	l, err := cl.Acquire(ctx, "longwait", ttl)
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	_ = l.Release(ctx)
}

type acquired struct {
	l   *lock.Lease
	err error
}

// acquireBehind starts an Acquire of name with ttl (waiting up to 10 s)
// behind the lock's current holder, and returns once it has queued and
// waited longer than waited; its result arrives on got.
func acquireBehind(t *testing.T, c *coordinatortest.Cluster, cl *lock.Client, name string, ttl, waited time.Duration) (asked time.Time, got <-chan acquired) {
	t.Helper()
	ch := make(chan acquired, 1)
	asked = time.Now()
	go func() {
		l, err := cl.Acquire(context.Background(), name, ttl, lock.Wait(10*time.Second))
		ch <- acquired{l, err}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; {
		l, err := c.Node(c.WaitLeader(5 * time.Second)).Machine().Lock(name)
		if err == nil && l.Waiters == 1 && time.Since(asked) > waited {
			return asked, ch
		}
		if time.Now().After(deadline) {
			t.Fatalf("the acquire of %s never queued", name)
		}
		<-time.After(5 * time.Millisecond) // polling interval of a bounded wait
	}
}
