package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/payonce/payonce/pkg/ring"
)

// ringOf decodes the ring the machine serves for service and checks it
// against the fingerprint served beside it.
func ringOf(t interface {
	Helper()
	Fatalf(string, ...any)
}, m *Machine, service string) *ring.Snapshot {
	t.Helper()
	ms := m.Members(service)
	if ms.Ring == nil {
		if len(ms.Members) > 0 {
			t.Fatalf("%s has %d members but no ring", service, len(ms.Members))
		}
		return nil
	}
	snap, err := ring.Decode(ms.Ring)
	if err != nil {
		t.Fatalf("decode ring of %s: %v", service, err)
	}
	if snap.Fingerprint() != ms.RingFingerprint {
		t.Fatalf("ring of %s: fingerprint %x, served %x", service, snap.Fingerprint(), ms.RingFingerprint)
	}
	var names []string
	for _, mb := range snap.Members() {
		names = append(names, mb.Name)
	}
	var want []string
	for _, mb := range ms.Members {
		want = append(want, mb.Instance)
	}
	if !slices.Equal(names, want) {
		t.Fatalf("ring of %s has members %v, the service %v", service, names, want)
	}
	return snap
}

func slotsOf(s *ring.Snapshot, name string) int {
	n := 0
	for slot := range s.SlotCount() {
		if o, _ := s.SlotOwner(slot); o == name {
			n++
		}
	}
	return n
}

// TestPropertyRingMovesOnlyTheChangedMember drives a service through random
// joins, deregistrations and expiries. After every change the served ring
// must hold exactly the live members, equal what replaying Rebalance over
// the same history gives, and differ from the previous ring only in the
// changed member's slots (ring.Diff). A second replica, restored from a
// snapshot at a random point, must serve byte-identical rings throughout.
func TestPropertyRingMovesOnlyTheChangedMember(t *testing.T) {
	const svc = "orders"
	instances := []string{"o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9", "o10", "o11", "o12"}
	rapid.Check(t, func(t *rapid.T) {
		a, b := New(), New()
		var index uint64
		now := int64(0)
		apply := func(c Command) {
			index++
			c.Now = now
			ra, rb := a.Apply(index, 1, c), b.Apply(index, 1, c)
			if describe(ra) != describe(rb) {
				t.Fatalf("replicas answered %v and %v", ra, rb)
			}
		}
		live := map[string]bool{}
		liveList := func() []string {
			var out []string
			for _, i := range instances {
				if live[i] {
					out = append(out, i)
				}
			}
			return out
		}
		heartbeat := func(except string) {
			for _, i := range liveList() {
				if i != except {
					apply(Command{Op: OpHeartbeat, Service: svc, Instance: i})
				}
			}
		}
		var model *ring.Snapshot // the history replayed outside the machine
		steps := rapid.IntRange(1, 40).Draw(t, "steps")
		cut := rapid.IntRange(0, steps).Draw(t, "cut")
		for step := range steps {
			prev := ringOf(t, a, svc)
			var changed string
			joined := false
			switch op := rapid.IntRange(0, 3).Draw(t, "op"); {
			case op <= 1 || len(live) == 0: // join (or refresh, which must move nothing)
				changed = rapid.SampledFrom(instances).Draw(t, "inst")
				joined = !live[changed]
				heartbeat("")
				apply(Command{Op: OpRegister, Service: svc, Instance: changed, Addr: "10.0.0.1:80", TTL: time.Second})
				live[changed] = true
			case op == 2: // deregister
				changed = rapid.SampledFrom(liveList()).Draw(t, "leaver")
				heartbeat("")
				apply(Command{Op: OpDeregister, Service: svc, Instance: changed})
				delete(live, changed)
			default: // expiry: everyone but the victim heartbeats, then time passes
				changed = rapid.SampledFrom(liveList()).Draw(t, "victim")
				heartbeat(changed)
				now += int64(500 * time.Millisecond)
				heartbeat(changed)
				now += int64(500 * time.Millisecond)
				apply(Command{Op: OpTick})
				delete(live, changed)
			}
			next := ringOf(t, a, svc)
			if got := a.Members(svc); len(got.Members) != len(live) {
				t.Fatalf("step %d: %d members, want %d", step, len(got.Members), len(live))
			}
			var ms []ring.Member
			for _, i := range liveList() {
				ms = append(ms, ring.Member{Name: i})
			}
			var err error
			if model, err = ring.Rebalance(model, ms); err != nil {
				t.Fatal(err)
			}
			if len(live) > 0 && next.Fingerprint() != model.Fingerprint() {
				t.Fatalf("step %d: served ring %x is not the replayed history's %x", step, next.Fingerprint(), model.Fingerprint())
			}
			if prev != nil && len(live) > 0 && prev.Len() > 0 {
				moved := ring.Diff(prev, next)
				for _, mv := range moved.Moves {
					if mv.From != changed && mv.To != changed {
						t.Fatalf("step %d: slots %d-%d moved %s -> %s, neither is %s", step, mv.First, mv.Last, mv.From, mv.To, changed)
					}
				}
				want := 0
				switch {
				case joined:
					want = slotsOf(next, changed)
				case !live[changed]:
					want = slotsOf(prev, changed) * moved.SlotCount / prev.SlotCount()
				}
				if moved.MovedSlots() != want {
					t.Fatalf("step %d (%s): %d slots moved, want %d", step, changed, moved.MovedSlots(), want)
				}
			}
			if !bytes.Equal(a.Members(svc).Ring, b.Members(svc).Ring) {
				t.Fatalf("step %d: replicas serve different rings", step)
			}
			if step == cut {
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
			t.Fatal("replicas diverged")
		}
	})
}

// TestRingSurvivesReRegistrationAndAddressChange: a heartbeat, a repeated
// register and an address change leave the table alone; only set changes
// move slots.
func TestRingSurvivesReRegistrationAndAddressChange(t *testing.T) {
	h := newHarness(t)
	for i := range 5 {
		h.apply(0, Command{Op: OpRegister, Service: "payments", Instance: fmt.Sprintf("p%d", i), Addr: "a", TTL: time.Minute})
	}
	before := h.m.Members("payments")
	h.apply(0, Command{Op: OpRegister, Service: "payments", Instance: "p2", Addr: "a", TTL: time.Minute})
	h.apply(0, Command{Op: OpHeartbeat, Service: "payments", Instance: "p3"})
	h.apply(0, Command{Op: OpRegister, Service: "payments", Instance: "p4", Addr: "b", TTL: time.Minute})
	after := h.m.Members("payments")
	if !bytes.Equal(before.Ring, after.Ring) {
		t.Fatal("the ring changed although the member set did not")
	}
	if after.Version == before.Version {
		t.Fatal("an address change must still move the version")
	}
	if s := ringOf(h.t, h.m, "payments"); s.Version() != 5 {
		t.Fatalf("ring version %d after 5 joins, want 5", s.Version())
	}
}

// TestRestoreBuildsTheRingOfAnOldSnapshot: a snapshot from before rings were
// kept restores with the canonical Build table, the same on every replica.
func TestRestoreBuildsTheRingOfAnOldSnapshot(t *testing.T) {
	old := `{"index":7,"clock":{"term":1,"offset":0,"now":0},"last_token":0,"locks":{},"requests":{},` +
		`"services":{"orders":{"version":7,"members":{"o1":{"addr":"a","ttl":1000000000,"deadline":1000000000},"o2":{"addr":"b","ttl":1000000000,"deadline":1000000000}}}}}`
	m := New()
	if err := m.Restore(bytes.NewReader([]byte(old))); err != nil {
		t.Fatal(err)
	}
	want, _ := ring.Build([]ring.Member{{Name: "o1"}, {Name: "o2"}})
	if got := ringOf(t, m, "orders"); got.Fingerprint() != want.Fingerprint() {
		t.Fatalf("restored ring %x, want Build's %x", got.Fingerprint(), want.Fingerprint())
	}
}
