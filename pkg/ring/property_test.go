package ring

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// drawMembers draws 1..maxN members with distinct names and, half the
// time, random weights (0, the default, included).
func drawMembers(t *rapid.T, maxN int, label string) []Member {
	names := rapid.SliceOfNDistinct(rapid.StringN(1, 8, -1), 1, maxN, rapid.ID).Draw(t, label+" names")
	weighted := rapid.Bool().Draw(t, label+" weighted")
	members := make([]Member, len(names))
	for i, name := range names {
		members[i].Name = name
		if weighted {
			members[i].Weight = rapid.Uint32Range(0, 8).Draw(t, label+" weight")
		}
	}
	return members
}

// drawHistory builds a ring and applies a few random joins and leaves, so
// properties are checked on tables that Rebalance made, not only Build.
func drawHistory(t *rapid.T) (*Snapshot, []Member) {
	members := drawMembers(t, 30, "initial")
	s, err := Build(members)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	for step := range rapid.IntRange(0, 4).Draw(t, "changes") {
		if len(members) > 1 && rapid.Bool().Draw(t, "leave") {
			i := rapid.IntRange(0, len(members)-1).Draw(t, "leaver")
			members = slices.Delete(slices.Clone(members), i, i+1)
		} else {
			members = append(slices.Clone(members), Member{Name: fmt.Sprintf("joiner-%d", step)})
		}
		if s, err = Rebalance(s, members); err != nil {
			t.Fatalf("Rebalance: %v", err)
		}
	}
	return s, members
}

func TestPropertyOrderOfMembersDoesNotMatter(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		members := drawMembers(t, 40, "members")
		shuffled := rapid.Permutation(members).Draw(t, "shuffled")
		a, errA := Build(members)
		b, errB := Build(shuffled)
		if errA != nil || errB != nil {
			t.Fatalf("Build: %v, %v", errA, errB)
		}
		if a.Fingerprint() != b.Fingerprint() || !slices.Equal(a.table, b.table) {
			t.Fatal("Build depends on the order of members")
		}
		prev, _ := drawHistory(t)
		c, errC := Rebalance(prev, members)
		d, errD := Rebalance(prev, shuffled)
		if errC != nil || errD != nil {
			t.Fatalf("Rebalance: %v, %v", errC, errD)
		}
		if c.Fingerprint() != d.Fingerprint() || !slices.Equal(c.table, d.table) {
			t.Fatal("Rebalance depends on the order of members")
		}
	})
}

func TestPropertyWeightsAreRespected(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, _ := drawHistory(t)
		checkFairShares(t, s)
	})
}

func TestPropertyOnlyTheChangedMemberMoves(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		before, members := drawHistory(t)
		var changed string
		var after *Snapshot
		var err error
		join := len(members) < 2 || rapid.Bool().Draw(t, "join")
		if join {
			changed = "newcomer"
			weight := rapid.Uint32Range(0, 8).Draw(t, "newcomer weight")
			after, err = Rebalance(before, append(slices.Clone(members), Member{Name: changed, Weight: weight}))
		} else {
			i := rapid.IntRange(0, len(members)-1).Draw(t, "leaver")
			changed = members[i].Name
			after, err = Rebalance(before, slices.Delete(slices.Clone(members), i, i+1))
		}
		if err != nil {
			t.Fatalf("Rebalance: %v", err)
		}
		h := Diff(before, after)
		for _, m := range h.Moves {
			if m.From != changed && m.To != changed {
				t.Fatalf("stray move of slots %d-%d %s -> %s; only %s changed", m.First, m.Last, m.From, m.To, changed)
			}
		}
		// The changed member's own slots are exactly what moved: the ideal.
		owned := func(s *Snapshot) int {
			i := slices.IndexFunc(s.Members(), func(m Member) bool { return m.Name == changed })
			if i < 0 {
				return 0
			}
			return s.SlotsOwned()[i] * (h.SlotCount / s.SlotCount())
		}
		if want := owned(before) + owned(after); h.MovedSlots() != want {
			t.Fatalf("%d slots moved, the changed member owned %d before and after", h.MovedSlots(), want)
		}
	})
}

func TestPropertySuccessorsAreDistinctAndStable(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, members := drawHistory(t)
		n := rapid.IntRange(1, 6).Draw(t, "n")
		keys := rapid.SliceOfN(rapid.String(), 1, 50).Draw(t, "keys")
		leaver := members[rapid.IntRange(0, len(members)-1).Draw(t, "leaver")].Name
		left, err := Rebalance(s, slices.DeleteFunc(slices.Clone(members), func(m Member) bool { return m.Name == leaver }))
		if err != nil {
			t.Fatal(err)
		}
		joined, err := Rebalance(s, append(slices.Clone(members), Member{Name: "newcomer"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range keys {
			got := s.Successors(key, n, nil)
			if len(got) != min(n, s.Len()) {
				t.Fatalf("Successors(%q, %d) has %d members of %d", key, n, len(got), s.Len())
			}
			if owner, _ := s.Owner(key); got[0] != owner {
				t.Fatalf("Successors(%q) starts with %s, owner is %s", key, got[0], owner)
			}
			if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
				t.Fatalf("Successors(%q) = %v repeats a member", key, got)
			}
			for k := 1; k < n; k++ {
				if !slices.Equal(s.Successors(key, k, nil), got[:min(k, len(got))]) {
					t.Fatalf("Successors(%q, %d) is not a prefix of Successors(%q, %d)", key, k, key, n)
				}
			}
			if !slices.Contains(got, leaver) && !slices.Equal(left.Successors(key, n, nil), got) {
				t.Fatalf("%s left and Successors(%q) changed from %v to %v without it",
					leaver, key, got, left.Successors(key, n, nil))
			}
			if after := joined.Successors(key, n, nil); !slices.Equal(after, got) && !slices.Contains(after, "newcomer") {
				t.Fatalf("newcomer joined and Successors(%q) changed from %v to %v without it", key, got, after)
			}
		}
	})
}

func TestPropertyEncodingRoundTrips(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, _ := drawHistory(t)
		data, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(data)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if back.Fingerprint() != s.Fingerprint() || back.Version() != s.Version() || !slices.Equal(back.table, s.table) {
			t.Fatal("decoded snapshot differs")
		}
	})
}
