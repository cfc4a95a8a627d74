package fsm

import (
	"errors"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator"
)

func acquireAttempt(lock, rid string, attempt uint64, ttl, wait time.Duration) Command {
	c := acquire(lock, rid, ttl, wait)
	c.Attempt = attempt
	return c
}

func cancelWait(lock, rid string, attempt uint64) Command {
	return Command{Op: OpCancelWait, Lock: lock, RequestID: rid, Attempt: attempt}
}

// TestLateCancelOfAnAbandonedAttemptCannotEndTheRetrysLease replays the
// race of issue 13 in the log order that broke it: attempt 1 of an acquire
// queues; its client gives up on it and retries (attempt 2, same request
// id); the lock is released and granted to the request, which attempt 2
// reports to its client; only then is attempt 1's cancel-wait applied. It
// used to give the lease back and grant the next waiter: two clients both
// believed they held the lock.
func TestLateCancelOfAnAbandonedAttemptCannotEndTheRetrysLease(t *testing.T) {
	h := newHarness(t)
	holder := h.apply(0, acquire("customer-1", "holder", 10*time.Second, 0))
	if r := h.apply(1*time.Millisecond, acquireAttempt("customer-1", "retried", 1, 10*time.Second, 10*time.Second)); !r.Queued {
		t.Fatalf("attempt 1 not queued: %+v", r)
	}
	if r := h.apply(2*time.Millisecond, acquire("customer-1", "next", 10*time.Second, 10*time.Second)); !r.Queued {
		t.Fatalf("next waiter not queued: %+v", r)
	}
	if r := h.apply(3*time.Millisecond, acquireAttempt("customer-1", "retried", 2, 10*time.Second, 10*time.Second)); !r.Queued {
		t.Fatalf("attempt 2 not queued: %+v", r)
	}
	h.apply(4*time.Millisecond, Command{Op: OpRelease, Lock: "customer-1", LeaseID: holder.Lease.ID})
	got := h.m.Outcome("retried")
	if got.Lease == nil {
		t.Fatalf("the retried request, first in line, was not granted: %+v", got)
	}
	// Attempt 1's cancel, applied late.
	h.apply(5*time.Millisecond, cancelWait("customer-1", "retried", 1))

	l, err := h.m.Lock("customer-1")
	if err != nil || l.Holder == nil || l.Holder.ID != got.Lease.ID {
		t.Fatalf("after the late cancel the lock is %+v (%v); want it still held by the retry's lease %s", l, err, got.Lease.ID)
	}
	if o := h.m.Outcome("next"); o.Lease != nil {
		t.Fatalf("second holder: the next waiter was granted %+v while the retry holds %s", o.Lease, got.Lease.ID)
	}
	if r := h.apply(6*time.Millisecond, Command{Op: OpKeepAlive, Lock: "customer-1", LeaseID: got.Lease.ID}); r.Err != nil {
		t.Fatalf("the retry's keepalive was refused: %v", r.Err)
	}
	// The newest attempt can still cancel: the lock goes to the next waiter.
	h.apply(7*time.Millisecond, cancelWait("customer-1", "retried", 2))
	if o := h.m.Outcome("next"); o.Lease == nil || o.Lease.Token <= got.Lease.Token {
		t.Fatalf("after attempt 2's own cancel the next waiter should hold the lock: %+v", o)
	}
}

// TestLateAcquireOfAnAbandonedAttemptChangesNothing: attempt 1's acquire
// may also arrive after attempt 2's (a slow forward); it must not take the
// request back, or attempt 2's own cancel would then be ignored.
func TestLateAcquireOfAnAbandonedAttemptChangesNothing(t *testing.T) {
	h := newHarness(t)
	h.apply(0, acquire("a", "holder", 10*time.Second, 0))
	h.apply(1*time.Millisecond, acquireAttempt("a", "r", 2, time.Second, 10*time.Second))
	h.apply(2*time.Millisecond, acquireAttempt("a", "r", 1, time.Second, 10*time.Second))
	if got := h.m.Attempt("r"); got != 2 {
		t.Fatalf("a late attempt 1 took the request over: newest attempt %d", got)
	}
	h.apply(3*time.Millisecond, cancelWait("a", "r", 2))
	if l, _ := h.m.Lock("a"); l.Waiters != 0 {
		t.Fatalf("attempt 2's cancel did not take the request out of line: %+v", l)
	}
}

// TestRetryKeepsItsPlaceInLine: a request whose earlier attempt's wait was
// cancelled (its client timed out and retried) re-enters the line where its
// first acquire put it, ahead of requests that came after it, instead of
// going to the back; a contended customer cannot be starved by retries.
func TestRetryKeepsItsPlaceInLine(t *testing.T) {
	h := newHarness(t)
	holder := h.apply(0, acquire("a", "holder", 10*time.Second, 0))
	h.apply(1*time.Millisecond, acquireAttempt("a", "early", 1, time.Second, 10*time.Second))
	h.apply(2*time.Millisecond, acquire("a", "later-1", time.Second, 10*time.Second))
	h.apply(3*time.Millisecond, cancelWait("a", "early", 1)) // attempt 1's wait ended before the retry arrived
	h.apply(4*time.Millisecond, acquire("a", "later-2", time.Second, 10*time.Second))
	if r := h.apply(5*time.Millisecond, acquireAttempt("a", "early", 2, time.Second, 10*time.Second)); !r.Queued {
		t.Fatalf("the retry was not queued again: %+v", r)
	}
	h.apply(6*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: holder.Lease.ID})
	first := h.m.Outcome("early")
	if first.Lease == nil {
		t.Fatalf("the retried request lost its place: early=%+v later-1=%+v", first, h.m.Outcome("later-1"))
	}
	h.apply(7*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: first.Lease.ID})
	if o := h.m.Outcome("later-1"); o.Lease == nil {
		t.Fatalf("later-1 should be next: %+v", o)
	}
}

// TestRetryOfAnEndedLeaseIsRefused: the request id protects against taking
// the lock twice; a lease that ran out is not revived by a retry.
func TestRetryOfAnEndedLeaseIsRefused(t *testing.T) {
	h := newHarness(t)
	h.apply(0, acquireAttempt("a", "r", 1, time.Second, 0))
	h.apply(2*time.Second, Command{Op: OpTick})
	r := h.apply(2*time.Second, acquireAttempt("a", "r", 2, time.Second, 0))
	if !errors.Is(r.Err, coordinator.ErrLeaseExpired) {
		t.Fatalf("retry of an expired lease: %+v, want lease-expired", r)
	}
}
