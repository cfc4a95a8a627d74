package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator"
)

const (
	payments1 = "payments/payments-1"
	payments2 = "payments/payments-2"
)

func as(caller string, c Command) Command { c.Caller = caller; return c }

// TestOnlyTheHolderChangesALease tries, as another identity that somehow
// learned the lease id and the request id, every way of touching a lease
// it was not granted: keepalive, release, replaying the acquire (which
// would report the lease id), cancelling it. Each is refused in the log and
// changes nothing; the holder's own calls still work.
func TestOnlyTheHolderChangesALease(t *testing.T) {
	h := newHarness(t)
	got := h.apply(0, as(payments1, acquire("cust-1", "r1", time.Second, 0)))
	if got.Err != nil || got.Lease == nil || got.Lease.Holder != payments1 {
		t.Fatalf("grant: %+v", got)
	}
	id := got.Lease.ID
	attacks := map[string]Command{
		"keepalive": as(payments2, Command{Op: OpKeepAlive, Lock: "cust-1", LeaseID: id}),
		"release":   as(payments2, Command{Op: OpRelease, Lock: "cust-1", LeaseID: id}),
		"retry":     as(payments2, acquire("cust-1", "r1", time.Second, 0)),
		"anonymous": {Op: OpRelease, Lock: "cust-1", LeaseID: id},
	}
	for name, c := range attacks {
		if r := h.apply(time.Millisecond, c); !errors.Is(r.Err, coordinator.ErrNotHolder) || r.Lease != nil {
			t.Errorf("%s by another identity: %+v, want not-holder and no lease", name, r)
		}
	}
	h.apply(time.Millisecond, as(payments2, Command{Op: OpCancelWait, Lock: "cust-1", RequestID: "r1"}))
	l, err := h.m.Lock("cust-1")
	if err != nil || l.Holder == nil || l.Holder.ID != id || l.Holder.Remaining != time.Second-time.Millisecond {
		t.Fatalf("after the attacks the lease must be untouched: %+v %v", l, err)
	}
	if r := h.apply(2*time.Millisecond, as(payments1, Command{Op: OpKeepAlive, Lock: "cust-1", LeaseID: id})); r.Err != nil {
		t.Fatalf("holder's keepalive: %+v", r)
	}
	if r := h.apply(3*time.Millisecond, as(payments1, Command{Op: OpRelease, Lock: "cust-1", LeaseID: id})); r.Err != nil {
		t.Fatalf("holder's release: %+v", r)
	}
}

// TestAWaiterIsGrantedAsItself: a lease handed to a queued acquirer on
// release belongs to that acquirer's identity, not to the releaser's.
func TestAWaiterIsGrantedAsItself(t *testing.T) {
	h := newHarness(t)
	first := h.apply(0, as(payments1, acquire("cust-1", "r1", time.Second, 0)))
	if r := h.apply(time.Millisecond, as(payments2, acquire("cust-1", "r2", time.Second, time.Second))); !r.Queued {
		t.Fatalf("second acquire should queue: %+v", r)
	}
	h.apply(2*time.Millisecond, as(payments1, Command{Op: OpRelease, Lock: "cust-1", LeaseID: first.Lease.ID}))
	o := h.m.Outcome("r2")
	if o.Lease == nil || o.Lease.Holder != payments2 {
		t.Fatalf("waiter's grant: %+v, want held by %s", o, payments2)
	}
	if r := h.apply(3*time.Millisecond, as(payments1, Command{Op: OpKeepAlive, Lock: "cust-1", LeaseID: o.Lease.ID})); !errors.Is(r.Err, coordinator.ErrNotHolder) {
		t.Fatalf("old holder keeps alive the waiter's lease: %+v", r)
	}
}

// TestLocksPerCallerLimit: an identity cannot hold or queue for more locks
// than the limit its entry carries; releasing one makes room again, and
// another identity is not affected.
func TestLocksPerCallerLimit(t *testing.T) {
	h := newHarness(t)
	limited := func(c Command) Command { c.MaxLocks = 2; return c }
	a := h.apply(0, as(payments1, limited(acquire("l1", "r1", time.Second, 0))))
	h.apply(0, as(payments1, limited(acquire("l2", "r2", time.Second, 0))))
	if r := h.apply(0, as(payments1, limited(acquire("l3", "r3", time.Second, 0)))); !errors.Is(r.Err, coordinator.ErrTooManyLocks) {
		t.Fatalf("third lock: %+v, want limit-exceeded", r)
	}
	if _, err := h.m.Lock("l3"); !errors.Is(err, coordinator.ErrLockNotFound) {
		t.Fatalf("a refused acquire must leave no lock behind: %v", err)
	}
	if r := h.apply(0, as(payments2, limited(acquire("l3", "r4", time.Second, 0)))); r.Err != nil {
		t.Fatalf("another identity's lock: %+v", r)
	}
	h.apply(0, as(payments1, Command{Op: OpRelease, Lock: "l1", LeaseID: a.Lease.ID}))
	if r := h.apply(0, as(payments1, limited(acquire("l4", "r5", time.Second, 0)))); r.Err != nil {
		t.Fatalf("after a release there is room: %+v", r)
	}
}

// TestMemberEntryBelongsToItsRegistrant: a live entry cannot be registered
// again (moved to another address) or heartbeaten by another identity;
// once it has expired it can be taken, and the operator may evict it.
func TestMemberEntryBelongsToItsRegistrant(t *testing.T) {
	h := newHarness(t)
	reg := func(caller, addr string) Command {
		return as(caller, Command{Op: OpRegister, Service: "orders", Instance: "orders-1", Addr: addr, TTL: time.Second})
	}
	if r := h.apply(0, reg("orders/orders-1", "10.0.0.1:8080")); r.Err != nil {
		t.Fatalf("register: %+v", r)
	}
	if r := h.apply(time.Millisecond, reg("admin/cli", "6.6.6.6:80")); !errors.Is(r.Err, coordinator.ErrMemberTaken) {
		t.Fatalf("re-register from another identity: %+v, want member-taken", r)
	}
	if r := h.apply(time.Millisecond, as("orders/orders-2", Command{Op: OpHeartbeat, Service: "orders", Instance: "orders-1"})); !errors.Is(r.Err, coordinator.ErrNotHolder) {
		t.Fatalf("heartbeat of another's entry: %+v", r)
	}
	if r := h.apply(time.Millisecond, as("orders/orders-2", Command{Op: OpDeregister, Service: "orders", Instance: "orders-1"})); !errors.Is(r.Err, coordinator.ErrNotHolder) {
		t.Fatalf("deregister of another's entry: %+v", r)
	}
	if ms := h.m.Members("orders"); len(ms.Members) != 1 || ms.Members[0].Addr != "10.0.0.1:8080" {
		t.Fatalf("entry after the attacks: %+v", ms)
	}
	if r := h.apply(2*time.Millisecond, reg("orders/orders-1", "10.0.0.1:8080")); r.Err != nil {
		t.Fatalf("the registrant refreshes its entry: %+v", r)
	}
	if r := h.apply(3*time.Millisecond, as("orders/orders-1", Command{Op: OpHeartbeat, Service: "orders", Instance: "orders-1"})); r.Err != nil {
		t.Fatalf("own heartbeat: %+v", r)
	}
	// Expired (not yet swept): the name is free again.
	if r := h.apply(3*time.Second, reg("orders/orders-9", "10.0.0.9:8080")); r.Err != nil {
		t.Fatalf("register over an expired entry: %+v", r)
	}
	if r := h.apply(3*time.Second, as("admin/cli", Command{Op: OpDeregister, Service: "orders", Instance: "orders-1"})); r.Err != nil {
		t.Fatalf("operator evicts: %+v", r)
	}
}

// TestKeepAliveBatchRenewsOnlyTheCallersLeases: a batch that names the
// caller's own lease and another identity's renews the first and refuses
// the second with the same not-holder a single keepalive gets (the batch
// goes through checkHolder for every lease).
func TestKeepAliveBatchRenewsOnlyTheCallersLeases(t *testing.T) {
	h := newHarness(t)
	own := h.apply(0, as(payments2, acquire("p-own", "r1", time.Second, 0)))
	other := h.apply(0, as(payments1, acquire("p-other", "r2", time.Second, 0)))
	res := h.apply(500*time.Millisecond, as(payments2, Command{Op: OpKeepAliveBatch, Leases: []LeaseRef{
		{Lock: "p-own", LeaseID: own.Lease.ID}, {Lock: "p-other", LeaseID: other.Lease.ID},
	}}))
	if res.Err != nil || len(res.Batch) != 2 {
		t.Fatalf("batch: %+v", res)
	}
	if res.Batch[0].Err != nil || res.Batch[0].Lease == nil {
		t.Fatalf("own lease: %+v", res.Batch[0])
	}
	if !errors.Is(res.Batch[1].Err, coordinator.ErrNotHolder) || res.Batch[1].Lease != nil {
		t.Fatalf("another identity's lease: %+v, want not-holder", res.Batch[1])
	}
	if l, _ := h.m.Lock("p-other"); l.Holder == nil || l.Holder.Remaining != 500*time.Millisecond {
		t.Fatalf("the other lease was renewed: %+v", l.Holder)
	}
}

// TestLockLimitCountsEveryClaim tries the two ways around the per-identity
// limit that counting locks left open: queueing many acquires on one lock
// (each is state the log keeps), and taking up again, once the caller is at
// its limit, an acquire whose short wait had ended (withdrawn).
func TestLockLimitCountsEveryClaim(t *testing.T) {
	limited := func(c Command) Command { c.MaxLocks = 2; return c }

	t.Run("many waiters on one lock", func(t *testing.T) {
		h := newHarness(t)
		h.apply(0, as(payments2, acquire("busy", "held", time.Minute, 0)))
		if r := h.apply(0, as(payments1, limited(acquire("busy", "w1", time.Second, time.Minute)))); !r.Queued {
			t.Fatalf("first waiter: %+v, want queued", r)
		}
		if r := h.apply(0, as(payments1, limited(acquire("busy", "w2", time.Second, time.Minute)))); !r.Queued {
			t.Fatalf("second waiter (2 of 2): %+v, want queued", r)
		}
		if r := h.apply(0, as(payments1, limited(acquire("busy", "w3", time.Second, time.Minute)))); !errors.Is(r.Err, coordinator.ErrTooManyLocks) {
			t.Fatalf("third waiter on the same lock: %+v, want limit-exceeded", r)
		}
	})

	t.Run("withdrawn acquire taken up again", func(t *testing.T) {
		h := newHarness(t)
		held := h.apply(0, as(payments2, acquire("busy", "held", time.Minute, 0))).Lease.ID
		if r := h.apply(0, as(payments1, limited(acquire("busy", "w1", time.Second, time.Millisecond)))); !r.Queued {
			t.Fatalf("short wait: %+v, want queued", r)
		}
		// The holder lets go after w1's wait has ended: w1 is withdrawn
		// (it holds and waits for nothing) and counts no more, so two
		// other locks fit under the limit.
		h.apply(5*time.Millisecond, as(payments2, Command{Op: OpRelease, Lock: "busy", LeaseID: held}))
		h.apply(6*time.Millisecond, as(payments2, acquire("busy", "held-again", time.Minute, 0)))
		h.apply(7*time.Millisecond, as(payments1, limited(acquire("l1", "a1", time.Minute, 0))))
		if r := h.apply(7*time.Millisecond, as(payments1, limited(acquire("l2", "a2", time.Minute, 0)))); r.Err != nil {
			t.Fatalf("second lock (2 of 2): %+v", r)
		}
		r := h.apply(8*time.Millisecond, as(payments1, limited(acquireAttempt("busy", "w1", 1, time.Minute, time.Minute))))
		if !errors.Is(r.Err, coordinator.ErrTooManyLocks) {
			t.Fatalf("withdrawn acquire retried at the limit: %+v, want limit-exceeded", r)
		}
		if l, err := h.m.Lock("busy"); err != nil || l.Waiters != 0 {
			t.Fatalf("the refused retry is in line: %+v, %v", l, err)
		}
	})
}
