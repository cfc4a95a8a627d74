package ring

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

func names(prefix string, n int) []Member {
	members := make([]Member, n)
	for i := range members {
		members[i] = Member{Name: fmt.Sprintf("%s-%03d", prefix, i)}
	}
	return members
}

func mustBuild(t testing.TB, members []Member) *Snapshot {
	t.Helper()
	s, err := Build(members)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return s
}

func mustRebalance(t testing.TB, prev *Snapshot, members []Member) *Snapshot {
	t.Helper()
	s, err := Rebalance(prev, members)
	if err != nil {
		t.Fatalf("Rebalance: %v", err)
	}
	return s
}

// fatalfer is what testing.TB and *rapid.T have in common.
type fatalfer interface {
	Helper()
	Fatalf(format string, args ...any)
}

// checkFairShares fails unless every member owns its weighted share of
// slots to within one slot: |slots - slotCount*weight/totalWeight| <= 1.
func checkFairShares(t fatalfer, s *Snapshot) {
	t.Helper()
	var total int64
	for _, m := range s.Members() {
		total += int64(m.Weight)
	}
	counts := s.SlotsOwned()
	for i, m := range s.Members() {
		diff := int64(counts[i])*total - int64(s.SlotCount())*int64(m.Weight)
		if diff > total || diff < -total {
			t.Fatalf("member %s (weight %d) owns %d of %d slots, fair share is %.2f",
				m.Name, m.Weight, counts[i], s.SlotCount(),
				float64(s.SlotCount())*float64(m.Weight)/float64(total))
		}
	}
}

func TestEmptyRingHasNoOwner(t *testing.T) {
	for name, s := range map[string]*Snapshot{
		"nil":       nil,
		"zero":      {},
		"built":     mustBuild(t, nil),
		"ring zero": new(Ring).Load(),
		"all leave": mustRebalance(t, mustBuild(t, names("n", 3)), nil),
	} {
		if owner, ok := s.Owner("customer-1"); ok || owner != "" {
			t.Errorf("%s: Owner = %q, %v; want none", name, owner, ok)
		}
		if got := s.Successors("customer-1", 3, nil); len(got) != 0 {
			t.Errorf("%s: Successors = %v; want none", name, got)
		}
		if s.Slot("customer-1") != -1 || s.SlotCount() != 0 || s.Len() != 0 {
			t.Errorf("%s: Slot/SlotCount/Len not empty", name)
		}
	}
}

func TestInvalidMembersAreRejected(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		want    error
	}{
		{"empty name", []Member{{Name: "a"}, {Name: ""}}, ErrEmptyName},
		{"duplicate", []Member{{Name: "a"}, {Name: "b"}, {Name: "a", Weight: 2}}, ErrDuplicateMember},
		{"weight", []Member{{Name: "a", Weight: MaxWeight + 1}}, ErrWeightTooLarge},
		{"too many", make([]Member, MaxMembers+1), ErrTooManyMembers},
	} {
		if _, err := Build(tc.members); !errors.Is(err, tc.want) {
			t.Errorf("%s: Build error = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestBuildIsBalancedAndSized(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 10, 100, 129, 1000} {
		s := mustBuild(t, names("node", n))
		checkFairShares(t, s)
		if want := 1 << slotBitsFor(n); s.SlotCount() != want {
			t.Errorf("%d members: %d slots, want %d", n, s.SlotCount(), want)
		}
		if s.SlotCount() < n*slotsPerMember {
			t.Errorf("%d members: %d slots is under %d per member", n, s.SlotCount(), slotsPerMember)
		}
	}
}

func TestWeightsGiveProportionalShares(t *testing.T) {
	members := []Member{{Name: "small", Weight: 1}, {Name: "medium", Weight: 3}, {Name: "large", Weight: 12}}
	s := mustBuild(t, members)
	checkFairShares(t, s)
	counts := s.SlotsOwned() // name order: large, medium, small
	if counts[0] < 11*counts[2] || counts[1] < 2*counts[2] {
		t.Fatalf("slot counts %v do not follow weights 12:3:1", counts)
	}
}

// The canonical table is pinned: a change to hashing or placement that
// would remap live keys must bump HashVersion and update this value.
func TestBuildIsPinned(t *testing.T) {
	s := mustBuild(t, names("orders", 5))
	const want uint64 = 0xf12353221c3a1c35
	if got := s.Fingerprint(); got != want {
		t.Fatalf("Fingerprint = %#x, want %#x: placement scheme changed", got, want)
	}
	if owner, _ := s.Owner("customer-42"); owner != "orders-003" {
		t.Fatalf("Owner(customer-42) = %q, want orders-003", owner)
	}
}

func TestJoinTakesExactlyItsShareFromOthers(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		before := mustBuild(t, names("node", n))
		after := mustRebalance(t, before, append(names("node", n), Member{Name: "joiner"}))
		checkFairShares(t, after)
		h := Diff(before, after)
		for _, m := range h.Moves {
			if m.To != "joiner" {
				t.Fatalf("%d members: slots %d-%d moved %s -> %s, not to the joiner", n, m.First, m.Last, m.From, m.To)
			}
		}
		fair := float64(after.SlotCount()) / float64(n+1)
		if moved := float64(h.MovedSlots()); moved > fair+1 || moved < fair-1 {
			t.Fatalf("%d members: join moved %.0f slots, fair share is %.1f", n, moved, fair)
		}
	}
}

func TestLeaveHandsOnlyItsOwnSlots(t *testing.T) {
	for _, n := range []int{2, 10, 100} {
		before := mustBuild(t, names("node", n))
		after := mustRebalance(t, before, names("node", n)[1:])
		checkFairShares(t, after)
		h := Diff(before, after)
		leaver := names("node", 1)[0].Name
		for _, m := range h.Moves {
			if m.From != leaver {
				t.Fatalf("%d members: slots %d-%d moved %s -> %s, not from the leaver", n, m.First, m.Last, m.From, m.To)
			}
		}
		if h.MovedSlots() != before.SlotsOwned()[0] {
			t.Fatalf("%d members: leave moved %d slots, leaver owned %d", n, h.MovedSlots(), before.SlotsOwned()[0])
		}
	}
}

func TestGrowingTheTableMovesNothing(t *testing.T) {
	before := mustBuild(t, names("node", 128)) // exactly 128 per member
	after := mustRebalance(t, before, append(names("node", 128), Member{Name: "joiner"}))
	if after.SlotCount() != 2*before.SlotCount() {
		t.Fatalf("table grew from %d to %d slots, want doubling", before.SlotCount(), after.SlotCount())
	}
	checkFairShares(t, after)
	for _, m := range Diff(before, after).Moves {
		if m.To != "joiner" {
			t.Fatalf("growth moved slots %d-%d %s -> %s", m.First, m.Last, m.From, m.To)
		}
	}
}

func TestUnchangedMembersReturnTheSameSnapshot(t *testing.T) {
	s := mustBuild(t, names("node", 4))
	shuffled := names("node", 4)
	slices.Reverse(shuffled)
	if again := mustRebalance(t, s, shuffled); again != s {
		t.Fatal("Rebalance with the same members made a new snapshot")
	}
	reweighted := names("node", 4)
	reweighted[2].Weight = 5
	next := mustRebalance(t, s, reweighted)
	if next.Version() != s.Version()+1 {
		t.Fatalf("version %d after %d", next.Version(), s.Version())
	}
	checkFairShares(t, next)
	for _, m := range Diff(s, next).Moves {
		if m.To != "node-002" {
			t.Fatalf("weight change of node-002 moved %s -> %s", m.From, m.To)
		}
	}
}

func TestSuccessorsAreDistinctOwnerFirst(t *testing.T) {
	s := mustBuild(t, names("node", 10))
	buf := make([]string, 0, 10)
	for i := range 1000 {
		key := fmt.Sprintf("customer-%d", i)
		owner, _ := s.Owner(key)
		got := s.Successors(key, 4, buf)
		if len(got) != 4 || got[0] != owner {
			t.Fatalf("Successors(%s) = %v, owner %s", key, got, owner)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(got)))) != 4 {
			t.Fatalf("Successors(%s) = %v has duplicates", key, got)
		}
	}
	if got := s.Successors("k", 50, nil); len(got) != 10 {
		t.Fatalf("asking for 50 of 10 members gave %d", len(got))
	}
}

// A member too light to own a slot is still a distinct member.
func TestSuccessorsIncludeMembersWithoutSlots(t *testing.T) {
	members := []Member{{Name: "feather", Weight: 1}}
	for i := range 3 {
		members = append(members, Member{Name: fmt.Sprintf("heavy-%d", i), Weight: MaxWeight})
	}
	s := mustBuild(t, members)
	if s.SlotsOwned()[0] != 0 {
		// Build is deterministic, so this is a broken set-up, not bad luck.
		t.Fatalf("feather owns %d slots; the set-up must leave it none", s.SlotsOwned()[0])
	}
	if got := s.Successors("k", 4, nil); len(got) != 4 || got[3] != "feather" {
		t.Fatalf("Successors = %v, want feather last", got)
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	s := mustBuild(t, names("node", 100))
	buf := make([]string, 0, 3)
	key := "customer-12345"
	if n := testing.AllocsPerRun(1000, func() { s.Owner(key) }); n != 0 {
		t.Errorf("Owner allocates %.1f times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { buf = s.Successors(key, 3, buf) }); n != 0 {
		t.Errorf("Successors allocates %.1f times", n)
	}
	var r Ring
	r.Store(s)
	if n := testing.AllocsPerRun(1000, func() { r.Owner(key) }); n != 0 {
		t.Errorf("Ring.Owner allocates %.1f times", n)
	}
}

func TestHandoffLookupFindsMovedKeys(t *testing.T) {
	before := mustBuild(t, names("node", 10))
	after := mustRebalance(t, before, append(names("node", 10), Member{Name: "joiner"}))
	h := Diff(before, after)
	moved := 0
	for i := range 20000 {
		key := fmt.Sprintf("customer-%d", i)
		was, _ := before.Owner(key)
		now, _ := after.Owner(key)
		move, ok := h.Lookup(key)
		if ok != (was != now) {
			t.Fatalf("%s: %s -> %s but Lookup says moving=%v", key, was, now, ok)
		}
		if ok {
			moved++
			if move.From != was || move.To != now {
				t.Fatalf("%s: %s -> %s but Lookup says %s -> %s", key, was, now, move.From, move.To)
			}
		}
	}
	if moved == 0 {
		t.Fatal("no key moved to the joiner")
	}
}

func TestEncodingRoundTrips(t *testing.T) {
	s := mustRebalance(t, mustBuild(t, names("node", 20)), names("node", 25)[3:])
	data, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if back.Fingerprint() != s.Fingerprint() || back.Version() != s.Version() ||
		!slices.Equal(back.table, s.table) || !slices.Equal(back.Members(), s.Members()) {
		t.Fatal("decoded snapshot differs")
	}
	for _, cut := range []int{0, 4, 6, len(data) / 2, len(data) - 1} {
		if _, err := Decode(data[:cut]); !errors.Is(err, ErrBadEncoding) {
			t.Errorf("Decode of %d of %d bytes: error %v", cut, len(data), err)
		}
	}
	corrupt := slices.Clone(data)
	corrupt[len(corrupt)-1] = 0xFF // an owner index past the member list
	if _, err := Decode(corrupt); !errors.Is(err, ErrBadEncoding) {
		t.Errorf("Decode of a bad owner index: error %v", err)
	}
}

// Readers keep looking up owners while a writer applies changes; run with
// -race to check that snapshots are never written after they are shared.
func TestRingSwapsWhileReading(t *testing.T) {
	var r Ring
	if _, err := r.Apply(names("node", 10)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			buf := make([]string, 0, 3)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprint(i)
				if _, ok := r.Owner(key); !ok {
					t.Error("ring became empty during changes")
					return
				}
				buf = r.Load().Successors(key, 3, buf)
			}
		})
	}
	for i := range 20 {
		if _, err := r.Apply(names("node", 10+i%5)); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	checkFairShares(t, r.Load())
}

// A fixed history of changes is pinned too: parties that replay the
// coordinator's membership log must reach this table on every version of
// the code with the same HashVersion.
func TestRebalanceHistoryIsPinned(t *testing.T) {
	s := mustBuild(t, names("orders", 5))
	s = mustRebalance(t, s, names("orders", 7))                                             // two join
	s = mustRebalance(t, s, names("orders", 7)[2:])                                         // two leave
	s = mustRebalance(t, s, append(names("orders", 7)[2:], Member{Name: "big", Weight: 3})) // weighted join
	const want uint64 = 0xe74891343b1102f
	if got := s.Fingerprint(); got != want || s.Version() != 4 {
		t.Fatalf("Fingerprint = %#x version %d, want %#x version 4: placement scheme changed", got, s.Version(), want)
	}
}
