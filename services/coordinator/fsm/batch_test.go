package fsm

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/services/coordinator"
)

// TestKeepAliveBatchRenewsEveryLeaseInOneEntry: one entry moves every
// named lease's deadline, and the leases outlive a TTL they would not have
// survived without it.
func TestKeepAliveBatchRenewsEveryLeaseInOneEntry(t *testing.T) {
	h := newHarness(t)
	var refs []LeaseRef
	for i := range 50 {
		r := h.apply(0, acquire(fmt.Sprintf("p-%d", i), fmt.Sprintf("r-%d", i), time.Second, 0))
		if r.Lease == nil {
			t.Fatalf("acquire %d: %+v", i, r)
		}
		refs = append(refs, LeaseRef{Lock: r.Lease.Lock, LeaseID: r.Lease.ID})
	}
	before := h.index
	res := h.apply(900*time.Millisecond, Command{Op: OpKeepAliveBatch, Leases: refs})
	if h.index != before+1 {
		t.Fatalf("the batch took %d entries", h.index-before)
	}
	if res.Err != nil || len(res.Batch) != len(refs) {
		t.Fatalf("batch: err %v, %d items for %d leases", res.Err, len(res.Batch), len(refs))
	}
	for i, it := range res.Batch {
		if it.Err != nil || it.Lease == nil || it.Lease.ID != refs[i].LeaseID || it.Lease.Remaining != time.Second {
			t.Fatalf("item %d: %+v", i, it)
		}
	}
	// 1.5 s after the grants: without the batch every lease would be gone.
	h.apply(1500*time.Millisecond, Command{Op: OpTick})
	for _, ref := range refs {
		l, err := h.m.Lock(ref.Lock)
		if err != nil || l.Holder == nil || l.Holder.ID != ref.LeaseID {
			t.Fatalf("%s after the batch and a tick: %+v, %v", ref.Lock, l, err)
		}
	}
}

// TestKeepAliveBatchItemsFailAlone: a lease that expired, was released, or
// names another holder's lock fails on its own; the others are renewed, and
// the failed ones are not revived or taken over.
func TestKeepAliveBatchItemsFailAlone(t *testing.T) {
	h := newHarness(t)
	live := h.apply(0, acquire("live", "r1", time.Second, 0)).Lease
	short := h.apply(0, acquire("short", "r2", 200*time.Millisecond, 0)).Lease
	released := h.apply(0, acquire("released", "r3", time.Second, 0)).Lease
	theirs := h.apply(0, acquire("theirs", "r4", time.Second, 0)).Lease
	h.apply(time.Millisecond, Command{Op: OpRelease, Lock: "released", LeaseID: released.ID})

	res := h.apply(500*time.Millisecond, Command{Op: OpKeepAliveBatch, Leases: []LeaseRef{
		{Lock: "live", LeaseID: live.ID},
		{Lock: "short", LeaseID: short.ID},       // expired at 200 ms
		{Lock: "released", LeaseID: released.ID}, // released
		{Lock: "theirs", LeaseID: "not-the-holders-lease"},
	}})
	if res.Err != nil || len(res.Batch) != 4 {
		t.Fatalf("batch: %+v", res)
	}
	if res.Batch[0].Err != nil || res.Batch[0].Lease == nil {
		t.Fatalf("live lease not renewed: %+v", res.Batch[0])
	}
	if !errors.Is(res.Batch[1].Err, coordinator.ErrLeaseNotHeld) {
		t.Fatalf("expired lease: %+v, want lease-not-held", res.Batch[1])
	}
	if !errors.Is(res.Batch[2].Err, coordinator.ErrLockNotFound) {
		t.Fatalf("released lease: %+v, want lock-not-found", res.Batch[2])
	}
	if !errors.Is(res.Batch[3].Err, coordinator.ErrLeaseNotHeld) {
		t.Fatalf("another holder's lock: %+v, want lease-not-held", res.Batch[3])
	}
	if l, _ := h.m.Lock("theirs"); l.Holder == nil || l.Holder.ID != theirs.ID || l.Holder.Remaining != 500*time.Millisecond {
		t.Fatalf("the other holder's lease was touched by a batch naming a wrong lease: %+v", l.Holder)
	}
	if _, err := h.m.Lock("short"); !errors.Is(err, coordinator.ErrLockNotFound) {
		t.Fatalf("an expired lease was revived by the batch: %v", err)
	}
}

// TestKeepAliveBatchRefusesBadInputWhole: a malformed batch renews nothing
// (not even its good leases) and says what is wrong.
func TestKeepAliveBatchRefusesBadInputWhole(t *testing.T) {
	h := newHarness(t)
	good := h.apply(0, acquire("good", "r1", time.Second, 0)).Lease
	ok := LeaseRef{Lock: "good", LeaseID: good.ID}
	tooMany := make([]LeaseRef, MaxBatch+1)
	for i := range tooMany {
		tooMany[i] = LeaseRef{Lock: fmt.Sprintf("l-%d", i), LeaseID: "x"}
	}
	tooMany[0] = ok
	cases := map[string][]LeaseRef{
		"empty":          nil,
		"too many":       tooMany,
		"duplicate lock": {ok, ok},
		"bad lock name":  {ok, {Lock: "a/b", LeaseID: "x"}},
		"empty lease id": {ok, {Lock: "other", LeaseID: ""}},
		"long lease id":  {ok, {Lock: "other", LeaseID: string(make([]byte, 65))}},
	}
	at := 100 * time.Millisecond
	for name, refs := range cases {
		deadlineBefore := h.m.st.Locks["good"].Holder.Deadline
		res := h.apply(at, Command{Op: OpKeepAliveBatch, Leases: refs})
		if errs.KindOf(res.Err) != errs.Invalid || res.Batch != nil {
			t.Fatalf("%s: %+v, want an Invalid error and no items", name, res)
		}
		if got := h.m.st.Locks["good"].Holder.Deadline; got != deadlineBefore {
			t.Fatalf("%s: the good lease was renewed by a refused batch", name)
		}
		at += 10 * time.Millisecond
	}
}

// TestKeepAliveBatchIsDeterministic: two replicas applying the same
// entries, batches among them, end in the same state.
func TestKeepAliveBatchIsDeterministic(t *testing.T) {
	a, b := newHarness(t), newHarness(t)
	var cmds []Command
	for i := range 20 {
		cmds = append(cmds, acquire(fmt.Sprintf("p-%d", i), fmt.Sprintf("r-%d", i), 300*time.Millisecond, time.Second))
	}
	for i := range 20 {
		cmds = append(cmds, acquire(fmt.Sprintf("p-%d", i), fmt.Sprintf("w-%d", i), 300*time.Millisecond, time.Second))
	}
	for _, c := range cmds {
		a.apply(0, c)
		b.apply(0, c)
	}
	var refs []LeaseRef
	for i := range 20 {
		l, _ := a.m.Lock(fmt.Sprintf("p-%d", i))
		if i%2 == 0 { // half renewed, half left to expire and pass to their waiter
			refs = append(refs, LeaseRef{Lock: l.Name, LeaseID: l.Holder.ID})
		}
	}
	// A batch past the deadline of all: every item expires its lease,
	// promoting the waiters, all inside one entry.
	for _, h := range []*harness{a, b} {
		h.apply(400*time.Millisecond, Command{Op: OpKeepAliveBatch, Leases: refs})
	}
	if a.m.Hash() != b.m.Hash() {
		t.Fatal("replicas diverged after a keepalive batch")
	}
	seen := map[coordinator.FenceToken]bool{}
	for i := range 20 {
		l, _ := a.m.Lock(fmt.Sprintf("p-%d", i))
		if l.Holder == nil || seen[l.Holder.Token] {
			t.Fatalf("p-%d after expiry in a batch: %+v (tokens must be unique)", i, l.Holder)
		}
		seen[l.Holder.Token] = true
	}
}
