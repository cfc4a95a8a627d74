package ring

import (
	"slices"
	"strings"
	"testing"
)

// FuzzRing feeds arbitrary member names (one per line), weights and keys
// through every entry point. Invalid member lists must come back as errors;
// nothing may panic, and valid rings must keep their invariants.
func FuzzRing(f *testing.F) {
	f.Add("a\nb\nc", []byte{0, 1, 2}, "customer-1", 3)
	f.Add("only", []byte{}, "", 1)
	f.Add("x\nx", []byte{}, "dup", 2)
	f.Add("\n\n", []byte{255}, "empty names", 0)
	f.Add("héllo\n\x00\xff\nz", []byte{9, 9, 9}, "\xff\xfe", -1)
	f.Add("a\nb", []byte{200, 1}, strings.Repeat("long key ", 20), 1<<40)
	f.Fuzz(func(t *testing.T, nameList string, weights []byte, key string, n int) {
		var members []Member
		for i, name := range strings.Split(nameList, "\n") {
			if i == 300 { // a large ring adds time, not coverage
				break
			}
			m := Member{Name: name}
			if len(weights) > 0 {
				// Scaled so that the range straddles MaxWeight.
				m.Weight = uint32(weights[i%len(weights)]) << 9
			}
			members = append(members, m)
		}
		s, err := Build(members)
		if err != nil {
			return
		}
		checkFairShares(t, s)
		owner, ok := s.Owner(key)
		if !ok || !slices.ContainsFunc(s.Members(), func(m Member) bool { return m.Name == owner }) {
			t.Fatalf("Owner(%q) = %q, %v: not a member", key, owner, ok)
		}
		succ := s.Successors(key, n, nil)
		if want := max(0, min(n, s.Len())); len(succ) != want {
			t.Fatalf("Successors(%q, %d) gave %d, want %d", key, n, len(succ), want)
		}
		if len(succ) > 0 && succ[0] != owner {
			t.Fatalf("Successors(%q) starts with %q, owner is %q", key, succ[0], owner)
		}
		rest, err := Rebalance(s, members[1:])
		if err != nil {
			t.Fatalf("Rebalance after a valid Build: %v", err)
		}
		h := Diff(s, rest)
		if move, moving := h.Lookup(key); moving && move.From != owner {
			t.Fatalf("Lookup(%q) says it moves from %q, owner is %q", key, move.From, owner)
		}
		data, _ := rest.MarshalBinary()
		back, err := Decode(data)
		if err != nil || back.Fingerprint() != rest.Fingerprint() {
			t.Fatalf("encoding round trip: %v", err)
		}
	})
}

// FuzzDecode checks that no input makes Decode panic or return a snapshot
// that panics on lookup.
func FuzzDecode(f *testing.F) {
	for _, members := range [][]Member{nil, {{Name: "a"}}, {{Name: "a"}, {Name: "b", Weight: 3}}} {
		s, err := Build(members)
		if err != nil {
			f.Fatal(err)
		}
		data, _ := s.MarshalBinary()
		f.Add(data)
	}
	f.Add([]byte("ring\x01\x01\x00\x0a\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(data)
		if err != nil {
			return
		}
		s.Owner("k")
		s.Successors("k", 3, nil)
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if back, err := Decode(again); err != nil || back.Fingerprint() != s.Fingerprint() {
			t.Fatalf("re-encoding a decoded snapshot fails: %v", err)
		}
	})
}
