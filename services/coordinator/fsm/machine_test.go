package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator"
	"pgregory.net/rapid"
)

// harness applies commands with consecutive indexes, like a Raft log would.
type harness struct {
	t     *testing.T
	m     *Machine
	index uint64
	term  uint64
}

func newHarness(t *testing.T) *harness { return &harness{t: t, m: New(), term: 1} }

func (h *harness) apply(now time.Duration, c Command) Result {
	h.index++
	c.Now = int64(now)
	return h.m.Apply(h.index, h.term, c)
}

func acquire(lock, rid string, ttl, wait time.Duration) Command {
	return Command{Op: OpAcquire, Lock: lock, RequestID: rid, TTL: ttl, Wait: wait}
}

func TestGrantHoldReleaseAndTokens(t *testing.T) {
	h := newHarness(t)
	r := h.apply(0, acquire("a", "r1", time.Second, 0))
	if r.Err != nil || r.Lease == nil {
		t.Fatalf("first acquire: %+v", r)
	}
	if r.Lease.Token != 1 {
		t.Fatalf("token = %d, want the Raft index 1", r.Lease.Token)
	}
	if r2 := h.apply(time.Millisecond, acquire("a", "r2", time.Second, 0)); !errors.Is(r2.Err, coordinator.ErrLockHeld) {
		t.Fatalf("second acquire while held: %+v", r2)
	}
	// Retrying the first request returns the same lease, not a new grant.
	if again := h.apply(2*time.Millisecond, acquire("a", "r1", time.Second, 0)); again.Lease == nil || again.Lease.ID != r.Lease.ID || again.Lease.Token != r.Lease.Token {
		t.Fatalf("retry of r1: %+v, want lease %s", again, r.Lease.ID)
	}
	if rel := h.apply(3*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: "wrong"}); !errors.Is(rel.Err, coordinator.ErrLeaseNotHeld) {
		t.Fatalf("release with wrong lease: %+v", rel)
	}
	if rel := h.apply(4*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: r.Lease.ID}); rel.Err != nil {
		t.Fatalf("release: %+v", rel)
	}
	r3 := h.apply(5*time.Millisecond, acquire("a", "r3", time.Second, 0))
	if r3.Lease == nil || r3.Lease.Token <= r.Lease.Token {
		t.Fatalf("next grant %+v must have a token above %d", r3, r.Lease.Token)
	}
	if _, err := h.m.Lock("nope"); !errors.Is(err, coordinator.ErrLockNotFound) {
		t.Fatalf("unknown lock: %v", err)
	}
}

func TestLeaseExpiresOnlyThroughLogTime(t *testing.T) {
	h := newHarness(t)
	r := h.apply(0, acquire("a", "r1", time.Second, 0))
	// Just before the deadline the lease still holds, and a keepalive extends it.
	h.apply(999*time.Millisecond, Command{Op: OpTick})
	if l, _ := h.m.Lock("a"); l.Holder == nil {
		t.Fatal("lease expired before its TTL")
	}
	if ka := h.apply(999*time.Millisecond, Command{Op: OpKeepAlive, Lock: "a", LeaseID: r.Lease.ID}); ka.Err != nil {
		t.Fatalf("keepalive: %v", ka.Err)
	}
	h.apply(1998*time.Millisecond, Command{Op: OpTick})
	if l, _ := h.m.Lock("a"); l.Holder == nil {
		t.Fatal("keepalive did not extend the lease")
	}
	h.apply(1999*time.Millisecond, Command{Op: OpTick})
	if _, err := h.m.Lock("a"); !errors.Is(err, coordinator.ErrLockNotFound) {
		t.Fatalf("lease should have expired at its deadline: %v", err)
	}
	if ka := h.apply(2000*time.Millisecond, Command{Op: OpKeepAlive, Lock: "a", LeaseID: r.Lease.ID}); ka.Err == nil {
		t.Fatal("keepalive of an expired lease succeeded")
	}
	if retry := h.apply(2001*time.Millisecond, acquire("a", "r1", time.Second, 0)); !errors.Is(retry.Err, coordinator.ErrLeaseExpired) {
		t.Fatalf("a late retry of an acquire whose lease expired must not grant again: %+v", retry)
	}
}

func TestNewLeaderRebasesDeadlines(t *testing.T) {
	h := newHarness(t)
	// Old leader's clock reads 1h; lease of 1s at log time 0.
	r := h.apply(time.Hour, acquire("a", "r1", time.Second, 0))
	h.apply(time.Hour+400*time.Millisecond, Command{Op: OpTick})
	// A new leader, whose clock has an unrelated origin (5s), takes over.
	h.term = 2
	h.apply(5*time.Second, Command{Op: OpTick})
	l, _ := h.m.Lock("a")
	if l.Holder == nil || l.Holder.Remaining != 600*time.Millisecond {
		t.Fatalf("after a leader change the lease must keep its remaining 600ms, got %+v", l.Holder)
	}
	h.apply(5*time.Second+599*time.Millisecond, Command{Op: OpTick})
	if l, _ := h.m.Lock("a"); l.Holder == nil || l.Holder.ID != r.Lease.ID {
		t.Fatal("lease ended early after the leader change")
	}
	h.apply(5*time.Second+600*time.Millisecond, Command{Op: OpTick})
	if _, err := h.m.Lock("a"); err == nil {
		t.Fatal("lease was stretched beyond its rebased deadline")
	}
}

func TestWaitersAreServedInOrder(t *testing.T) {
	h := newHarness(t)
	first := h.apply(0, acquire("a", "holder", time.Second, 0))
	for i, rid := range []string{"w1", "w2", "w3"} {
		if r := h.apply(time.Duration(i+1)*time.Millisecond, acquire("a", rid, time.Second, 10*time.Second)); !r.Queued {
			t.Fatalf("%s not queued: %+v", rid, r)
		}
	}
	// w2 gives up; w1 then w3 must be served.
	h.apply(5*time.Millisecond, Command{Op: OpCancelWait, Lock: "a", RequestID: "w2"})
	h.apply(6*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: first.Lease.ID})
	o := h.m.Outcome("w1")
	if o.Lease == nil || o.Lease.Token <= first.Lease.Token {
		t.Fatalf("w1 should hold the lock now: %+v", o)
	}
	h.apply(7*time.Millisecond, Command{Op: OpRelease, Lock: "a", LeaseID: o.Lease.ID})
	if o3 := h.m.Outcome("w3"); o3.Lease == nil || o3.Lease.Token <= o.Lease.Token {
		t.Fatalf("w3 should hold the lock now: %+v", o3)
	}
	if o2 := h.m.Outcome("w2"); o2.Lease != nil || o2.Queued {
		t.Fatalf("w2 cancelled its wait but got %+v", o2)
	}
}

func TestWaitRunsOut(t *testing.T) {
	h := newHarness(t)
	h.apply(0, acquire("a", "holder", 10*time.Second, 0))
	h.apply(0, acquire("a", "w", time.Second, time.Second))
	h.apply(time.Second, Command{Op: OpTick})
	if o := h.m.Outcome("w"); o.Queued || o.Lease != nil {
		t.Fatalf("wait should have run out: %+v", o)
	}
}

func TestOneEntryGrantingSeveralLocksKeepsTokensUnique(t *testing.T) {
	h := newHarness(t)
	a := h.apply(0, acquire("a", "ha", time.Second, 0))
	b := h.apply(0, acquire("b", "hb", time.Second, 0))
	h.apply(0, acquire("a", "wa", time.Second, time.Minute))
	h.apply(0, acquire("b", "wb", time.Second, time.Minute))
	h.apply(time.Second, Command{Op: OpTick}) // expires both, promotes both waiters
	wa, wb := h.m.Outcome("wa"), h.m.Outcome("wb")
	if wa.Lease == nil || wb.Lease == nil {
		t.Fatalf("waiters not promoted: %+v %+v", wa, wb)
	}
	if wa.Lease.Token == wb.Lease.Token || min(wa.Lease.Token, wb.Lease.Token) <= max(a.Lease.Token, b.Lease.Token) {
		t.Fatalf("tokens not unique and increasing: %d %d after %d %d", wa.Lease.Token, wb.Lease.Token, a.Lease.Token, b.Lease.Token)
	}
	next := h.apply(time.Second, acquire("c", "hc", time.Second, 0))
	if next.Lease.Token <= max(wa.Lease.Token, wb.Lease.Token) {
		t.Fatalf("next entry's token %d not above %d", next.Lease.Token, max(wa.Lease.Token, wb.Lease.Token))
	}
}

func TestMembership(t *testing.T) {
	h := newHarness(t)
	reg := func(inst, addr string) Result {
		return h.apply(0, Command{Op: OpRegister, Service: "payments", Instance: inst, Addr: addr, TTL: time.Second})
	}
	r1 := reg("p1", "127.0.0.1:1")
	r2 := reg("p2", "127.0.0.1:2")
	if r2.Members.Version <= r1.Members.Version || len(r2.Members.Members) != 2 {
		t.Fatalf("register: %+v then %+v", r1.Members, r2.Members)
	}
	v := r2.Members.Version
	reg("p1", "127.0.0.1:1") // re-register, same address: no change
	if got := h.m.Members("payments").Version; got != v {
		t.Fatalf("an unchanged re-register moved the version %d -> %d", v, got)
	}
	h.apply(900*time.Millisecond, Command{Op: OpHeartbeat, Service: "payments", Instance: "p2"})
	h.apply(time.Second, Command{Op: OpTick})
	ms := h.m.Members("payments")
	if len(ms.Members) != 1 || ms.Members[0].Instance != "p2" || ms.Version <= v {
		t.Fatalf("p1 should have expired, p2 stayed by heartbeat: %+v", ms)
	}
	if r := h.apply(time.Second, Command{Op: OpHeartbeat, Service: "payments", Instance: "p1"}); !errors.Is(r.Err, coordinator.ErrMemberNotFound) {
		t.Fatalf("heartbeat of an expired member: %+v", r)
	}
}

func TestInvalidCommandsChangeNothing(t *testing.T) {
	h := newHarness(t)
	h.apply(0, acquire("a", "r1", time.Second, 0))
	before := h.m.Snapshot()
	for _, c := range []Command{
		acquire("", "x", time.Second, 0),
		acquire("b", "x", 0, 0),
		acquire("b", "x", -time.Second, 0),
		acquire("b", "x", 1000*time.Hour, 0),
		acquire("b", "", time.Second, 0),
		{Op: OpRelease, Lock: "zzz", LeaseID: "x"},
		{Op: "bogus"},
	} {
		h.index++
		r := h.m.Apply(h.index, h.term, c)
		if r.Err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	after := h.m.Snapshot()
	// Only the applied index may differ.
	strip := func(b []byte) []byte { return b[bytes.IndexByte(b, ','):] }
	if !bytes.Equal(strip(before), strip(after)) {
		t.Fatalf("invalid commands changed the state:\n%s\n%s", before, after)
	}
}

// genCommand draws a command over a small universe of names so that
// collisions (contention, retries, wrong lease ids) are common.
func genCommand(t *rapid.T, leaseIDs []string) Command {
	locks := []string{"a", "b", "c"}
	op := rapid.SampledFrom([]Op{OpAcquire, OpAcquire, OpKeepAlive, OpRelease, OpCancelWait, OpTick, OpRegister, OpHeartbeat, OpDeregister}).Draw(t, "op")
	c := Command{Op: op, Lock: rapid.SampledFrom(locks).Draw(t, "lock")}
	switch op {
	case OpAcquire, OpCancelWait:
		c.RequestID = fmt.Sprintf("r%d", rapid.IntRange(0, 12).Draw(t, "rid"))
		c.TTL = time.Duration(rapid.IntRange(100, 3000).Draw(t, "ttl")) * time.Millisecond
		c.Wait = time.Duration(rapid.SampledFrom([]int{0, 0, 500, 5000}).Draw(t, "wait")) * time.Millisecond
		c.Attempt = uint64(rapid.IntRange(0, 3).Draw(t, "attempt"))
	case OpKeepAlive, OpRelease:
		if len(leaseIDs) > 0 {
			c.LeaseID = rapid.SampledFrom(leaseIDs).Draw(t, "lease")
		}
	case OpRegister, OpHeartbeat, OpDeregister:
		c.Service = rapid.SampledFrom([]string{"orders", "payments"}).Draw(t, "svc")
		c.Instance = rapid.SampledFrom([]string{"i1", "i2"}).Draw(t, "inst")
		c.Addr = rapid.SampledFrom([]string{"127.0.0.1:1", "127.0.0.1:2"}).Draw(t, "addr")
		c.TTL = time.Second
	}
	return c
}

// TestPropertySnapshotRoundTripAndDeterminism drives two machines with the
// same random log; one of them is snapshotted and restored into a fresh
// machine midway. All must agree byte for byte, and tokens of grants must
// strictly increase.
func TestPropertySnapshotRoundTripAndDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := New(), New()
		var leaseIDs []string
		var lastToken coordinator.FenceToken
		now, term := int64(0), uint64(1)
		n := rapid.IntRange(1, 120).Draw(t, "n")
		cut := rapid.IntRange(0, n).Draw(t, "cut")
		seen := map[string]coordinator.FenceToken{}
		for i := 1; i <= n; i++ {
			now += int64(rapid.IntRange(0, 700).Draw(t, "dt")) * int64(time.Millisecond)
			if rapid.IntRange(0, 20).Draw(t, "newterm") == 0 {
				term++
				now += int64(time.Hour) // a new leader's clock has its own origin
			}
			c := genCommand(t, leaseIDs)
			c.Now = now
			ra := a.Apply(uint64(i), term, c)
			rb := b.Apply(uint64(i), term, c)
			if describe(ra) != describe(rb) {
				t.Fatalf("same entry, different results: %v vs %v", ra, rb)
			}
			// Every lease that appeared with this entry (a grant or a
			// waiter's promotion) must carry a token above all earlier ones.
			var fresh []coordinator.FenceToken
			for _, h := range holders(a) {
				if _, ok := seen[h.ID]; !ok {
					seen[h.ID] = h.Token
					fresh = append(fresh, h.Token)
				}
			}
			for _, tok := range fresh {
				if tok <= lastToken {
					t.Fatalf("new grant's token %d not above earlier %d", tok, lastToken)
				}
			}
			for _, tok := range fresh {
				lastToken = max(lastToken, tok)
			}
			if ra.Lease != nil {
				leaseIDs = append(leaseIDs, ra.Lease.ID)
			}
			if i == cut {
				c := New()
				if err := c.Restore(bytes.NewReader(b.Snapshot())); err != nil {
					t.Fatal(err)
				}
				if c.Hash() != b.Hash() {
					t.Fatalf("restore is not exact:\n%s\n%s", b.Snapshot(), c.Snapshot())
				}
				b = c
			}
		}
		if a.Hash() != b.Hash() {
			t.Fatalf("replicas diverged:\n%s\n%s", a.Snapshot(), b.Snapshot())
		}
	})
}

func describe(r Result) string {
	s := fmt.Sprintf("queued=%v err=%v", r.Queued, r.Err)
	if r.Lease != nil {
		s += fmt.Sprintf(" lease=%+v", *r.Lease)
	}
	if r.Members != nil {
		s += fmt.Sprintf(" members=%+v", *r.Members)
	}
	return s
}

func holders(m *Machine) []coordinator.Lease {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []coordinator.Lease
	for _, name := range sortedKeys(m.st.Locks) {
		if h := m.st.Locks[name].Holder; h != nil {
			out = append(out, *m.st.view(name, h))
		}
	}
	return out
}
