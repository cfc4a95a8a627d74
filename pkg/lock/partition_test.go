package lock_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

// TestPartitionLeasesRenewInOneRequest: a group of 40 leases survives many
// TTLs on renewals alone, one request per interval for all 40, and each
// lease keeps its own, distinct token.
func TestPartitionLeasesRenewInOneRequest(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	ctx := context.Background()
	cl := lock.NewClient(c.URLs(), lock.WithOwner("p1"))
	// 3 s, not less: the 40 acquires below run one after the other while
	// the group renews the first ones, and at 600 ms a loaded CI machine
	// (-race, two packages at once) let partition 0 lapse before the last
	// was granted. What the test measures, one request per renewal, does
	// not depend on the TTL.
	const ttl = 3 * time.Second
	g, err := cl.PartitionLeases(ttl)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go g.Run(runCtx)
	tokens := map[uint64]bool{}
	var leases []*lock.Lease
	for i := range 40 {
		l, err := g.Acquire(ctx, fmt.Sprintf("payments-partition-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if tokens[l.Token()] {
			t.Fatalf("token %d granted twice", l.Token())
		}
		tokens[l.Token()] = true
		leases = append(leases, l)
	}
	before, renewalsBefore := cl.Requests(), g.Renewals()
	start := time.Now()
	// Wait for at least 6 renewals (2 TTLs), on the group's own counter.
	poll := time.NewTicker(10 * time.Millisecond) // polling a counter, not waiting for time to pass
	defer poll.Stop()
	for g.Renewals() < renewalsBefore+6 {
		for _, l := range leases {
			if !l.Valid() {
				t.Fatalf("%s lost after %v: %v", l.Name(), time.Since(start), l.Err())
			}
		}
		<-poll.C
	}
	requests, renewals := cl.Requests()-before, g.Renewals()-renewalsBefore
	if requests != renewals {
		t.Fatalf("%d requests for %d renewals of 40 leases: renewals must be one request each", requests, renewals)
	}
	for _, l := range leases {
		if !l.Valid() || l.Err() != nil {
			t.Fatalf("%s after %v: %v", l.Name(), time.Since(start), l.Err())
		}
	}
	if err := g.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if !errors.Is(l.Err(), lock.ErrReleased) {
			t.Fatalf("%s after Close: %v", l.Name(), l.Err())
		}
	}
	// Released for real: another holder gets a partition at once, with a
	// higher token.
	other, _ := lock.NewClient(c.URLs()).PartitionLeases(ttl)
	l2, err := other.Acquire(ctx, "payments-partition-7")
	if err != nil || l2.Token() <= leases[7].Token() {
		t.Fatalf("successor: %v, token %v after %d", err, l2, leases[7].Token())
	}
}

// TestPartitionLeasesRefuseBadInput: a TTL that cannot be renewed in time,
// an empty name, and a second lease on a partition the group holds are
// refused before anything is sent.
func TestPartitionLeasesRefuseBadInput(t *testing.T) {
	c := coordinatortest.Start(t, 1)
	ctx := context.Background()
	cl := lock.NewClient(c.URLs())
	if _, err := cl.PartitionLeases(0); err == nil {
		t.Fatal("a zero TTL was accepted")
	}
	if _, err := lock.NewClient(c.URLs(), lock.WithSafetyMargin(time.Second)).PartitionLeases(2 * time.Second); err == nil {
		t.Fatal("a safety margin above TTL/3 was accepted: the deadline would pass before the first renewal")
	}
	g, err := cl.PartitionLeases(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Acquire(ctx, ""); err == nil {
		t.Fatal("an empty partition name was accepted")
	}
	if _, err := g.Acquire(ctx, "p-1"); err != nil {
		t.Fatal(err)
	}
	n := cl.Requests()
	if _, err := g.Acquire(ctx, "p-1"); err == nil {
		t.Fatal("a second lease on a held partition was accepted")
	}
	if cl.Requests() != n {
		t.Fatal("the refused acquire reached the coordinator")
	}
	// The coordinator refuses a malformed batch whole (400), and says why.
	for name, body := range map[string]string{
		"empty":     `{"leases":[]}`,
		"duplicate": `{"leases":[{"lock":"p-1","lease_id":"a"},{"lock":"p-1","lease_id":"b"}]}`,
		"bad name":  `{"leases":[{"lock":"a b","lease_id":"a"}]}`,
		"no id":     `{"leases":[{"lock":"p-2"}]}`,
	} {
		resp, err := http.Post(c.URL(0)+"/v1/leases/keepalive", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
			t.Fatalf("%s batch: %d %s, want 400 problem+json", name, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// TestPartitionLeasesLapseWhenCutOff: with the coordinator unreachable the
// group's leases close Done by their client-side deadline (before the
// coordinator could grant them to anyone), and a successor gets them with
// a higher token once they expire there.
func TestPartitionLeasesLapseWhenCutOff(t *testing.T) {
	c := coordinatortest.Start(t, 1)
	ctx := context.Background()
	target, _ := url.Parse(c.URL(0))
	var cut atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut.Load() {
			http.Error(w, "cut", http.StatusServiceUnavailable)
			return
		}
		httputil.NewSingleHostReverseProxy(target).ServeHTTP(w, r)
	}))
	defer proxy.Close()
	cl := lock.NewClient([]string{proxy.URL})
	const ttl = 600 * time.Millisecond
	g, _ := cl.PartitionLeases(ttl)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go g.Run(runCtx)
	var leases []*lock.Lease
	for i := range 5 {
		l, err := g.Acquire(ctx, fmt.Sprintf("part-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	cut.Store(true)
	cutAt := time.Now()
	for _, l := range leases {
		select {
		case <-l.Done():
		case <-time.After(ttl + time.Second):
			t.Fatalf("%s still held %v after the cut", l.Name(), time.Since(cutAt))
		}
		if l.Valid() {
			t.Fatalf("%s closed Done but reports Valid", l.Name())
		}
		if _, ok := g.Lease(l.Name()); ok {
			t.Fatalf("the group still hands out %s", l.Name())
		}
	}
	// The safety bound itself does not depend on when the loop ran: every
	// client-side deadline lies before the cut plus the TTL, which is the
	// earliest the coordinator could expire the lease.
	for _, l := range leases {
		if d := l.Deadline(); !d.Before(cutAt.Add(ttl)) {
			t.Fatalf("%s deadline %v after the cut, not before the TTL %v", l.Name(), d.Sub(cutAt), ttl)
		}
	}
	// The coordinator grants the partition again only after the TTL, to a
	// successor, with a higher token.
	succ, _ := lock.NewClient(c.URLs()).PartitionLeases(ttl)
	l, err := succ.Acquire(ctx, "part-3", lock.Wait(5*time.Second))
	if err != nil || l.Token() <= leases[3].Token() {
		t.Fatalf("successor: %v (token %v, old %d)", err, l, leases[3].Token())
	}
}

// TestCheckFenceRefusesTheOldHolderOnceTheNewOneClaimed: the partition
// fence on real PostgreSQL. The holder's writes pass the shared check side
// by side; a successor's claim waits for a write in flight under the old
// lease, and from then on the old lease is refused, whatever its token.
func TestCheckFenceRefusesTheOldHolderOnceTheNewOneClaimed(t *testing.T) {
	ctx := context.Background()
	pool := fencePool(t)
	old := lock.FenceToken{Epoch: 1, Token: 10, LeaseID: "old"}
	next := lock.FenceToken{Epoch: 1, Token: 20, LeaseID: "next"}
	claim := func(tok lock.FenceToken) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return lock.ClaimFence(ctx, tx, "partition-3", tok) })
	}
	check := func(tok lock.FenceToken) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return lock.CheckFence(ctx, tx, "partition-3", tok) })
	}
	if err := check(old); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("check before any claim: %v, want ErrStaleToken", err)
	}
	if err := claim(old); err != nil {
		t.Fatal(err)
	}
	// Two writes of the holder in flight at once: neither waits for the other.
	tx1, _ := pool.Begin(ctx)
	defer tx1.Rollback(ctx)
	if err := lock.CheckFence(ctx, tx1, "partition-3", old); err != nil {
		t.Fatal(err)
	}
	tx2, _ := pool.Begin(ctx)
	if err := lock.CheckFence(ctx, tx2, "partition-3", old); err != nil {
		t.Fatal(err)
	}
	_ = tx2.Rollback(ctx)
	// The successor's claim waits for tx1 (still open): PostgreSQL shows
	// its backend waiting on a lock held by tx1's.
	var holderPID uint32
	if err := tx1.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	claimed := make(chan error, 1)
	go func() { claimed <- claim(next) }()
	waitBlockedBy(t, pool, holderPID, claimed)
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-claimed; err != nil {
		t.Fatalf("claim after the old write committed: %v", err)
	}
	if err := check(old); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("old holder after the claim: %v, want ErrStaleToken", err)
	}
	if err := check(next); err != nil {
		t.Fatalf("new holder: %v", err)
	}
	if err := claim(old); !errors.Is(err, lock.ErrStaleToken) {
		t.Fatalf("old holder claiming back: %v, want ErrStaleToken", err)
	}
	// Same token under another lease id, and a lower token, are refused.
	for _, tok := range []lock.FenceToken{{Epoch: 1, Token: 20, LeaseID: "forged"}, {Epoch: 1, Token: 19, LeaseID: "next"}} {
		if err := check(tok); !errors.Is(err, lock.ErrStaleToken) {
			t.Fatalf("check %+v: %v, want ErrStaleToken", tok, err)
		}
	}
}

// waitBlockedBy waits until some backend is waiting for a lock that the
// backend holderPID holds (pg_blocking_pids), failing if done delivers
// first: the operation behind done returned without waiting.
func waitBlockedBy(t *testing.T, pool *pgxpool.Pool, holderPID uint32, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		var blocked bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY (pg_blocking_pids(pid)))`,
			int32(holderPID)).Scan(&blocked); err != nil {
			t.Fatalf("read pg_blocking_pids: %v", err)
		}
		if blocked {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("the claim did not wait for the old holder's write in flight: %v", err)
		case <-ctx.Done():
			t.Fatal("no backend came to wait on the old holder's row lock within 30s")
		case <-poll.C:
		}
	}
}
