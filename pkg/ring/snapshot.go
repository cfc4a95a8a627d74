package ring

import "slices"

// Snapshot is one immutable state of the ring: a member list and the slot
// table that maps every key to one of them. Because a Snapshot never
// changes after it is made, any number of goroutines may look up keys in it
// without locks while a new Snapshot is being prepared; see Ring for the
// atomic hand-over.
//
// The zero Snapshot, and a nil *Snapshot, are empty rings: Owner reports no
// owner and Successors returns none.
type Snapshot struct {
	version     uint64
	members     []Member // in name order; a member's index is its position
	names       []string // names[i] == members[i].Name, kept apart for the lookup path
	table       []uint16 // slot -> member index; len is 0 or a power of two
	mask        uint64   // len(table)-1
	fingerprint uint64
}

// Owner returns the member that owns key, and false if the ring has no
// members. It does not allocate and takes no locks.
func (s *Snapshot) Owner(key string) (string, bool) {
	if s == nil || len(s.table) == 0 {
		return "", false
	}
	return s.names[s.table[Hash(key)&s.mask]], true
}

// Successors appends to buf[:0] up to n distinct members for key, the owner
// first, and returns the extended slice; with fewer than n members it
// returns them all. The i-th member is where the key's i-th replica belongs,
// and Successors(key, k, buf) is always a prefix of Successors(key, n, buf)
// for k < n. It does not allocate when cap(buf) >= n.
//
// The walk visits the slots that follow the key's slot in the table, so the
// list changes only where a visited slot changed owner: a member leaving
// alters only the lists it was in, and a member joining alters only lists
// it enters.
func (s *Snapshot) Successors(key string, n int, buf []string) []string {
	buf = buf[:0]
	if s == nil || len(s.table) == 0 || n <= 0 {
		return buf
	}
	n = min(n, len(s.names))
	h := Hash(key)
	slot := h & s.mask
	last := -1 // the member of the previous slot, to skip runs cheaply
	for visited := 0; visited <= int(s.mask) && len(buf) < n; visited++ {
		owner := int(s.table[(slot+uint64(visited))&s.mask])
		if owner == last {
			continue
		}
		last = owner
		if name := s.names[owner]; !slices.Contains(buf, name) {
			buf = append(buf, name)
		}
	}
	// A member whose weight is too small for a single slot is not on the
	// table; it still counts as a distinct member, after all who are.
	start := int(h>>32) % len(s.names)
	for i := 0; i < len(s.names) && len(buf) < n; i++ {
		if name := s.names[(start+i)%len(s.names)]; !slices.Contains(buf, name) {
			buf = append(buf, name)
		}
	}
	return buf
}

// Slot returns the index of the table slot that key falls in, or -1 for an
// empty ring. Keys move between members a whole slot at a time, so this is
// the unit of hand-off (see Diff).
func (s *Snapshot) Slot(key string) int {
	if s == nil || len(s.table) == 0 {
		return -1
	}
	return int(Hash(key) & s.mask)
}

// SlotOwner returns the member that owns slot, and false if slot is out of
// range.
func (s *Snapshot) SlotOwner(slot int) (string, bool) {
	if s == nil || slot < 0 || slot >= len(s.table) {
		return "", false
	}
	return s.names[s.table[slot]], true
}

// SlotCount returns the number of slots in the table: zero for an empty
// ring, otherwise a power of two.
func (s *Snapshot) SlotCount() int {
	if s == nil {
		return 0
	}
	return len(s.table)
}

// Len returns the number of members.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.members)
}

// Members returns a copy of the members in name order, with default weights
// filled in.
func (s *Snapshot) Members() []Member {
	if s == nil {
		return nil
	}
	return slices.Clone(s.members)
}

// SlotsOwned returns how many slots each member owns, indexed like Members.
// A member's share of keys is its count divided by SlotCount.
func (s *Snapshot) SlotsOwned() []int {
	if s == nil {
		return nil
	}
	counts := make([]int, len(s.members))
	for _, owner := range s.table {
		counts[owner]++
	}
	return counts
}

// Version counts the membership changes that led to this snapshot: Build
// gives 1 and each Rebalance that changes something adds 1. Two parties that
// applied the same changes in the same order hold the same Version and the
// same Fingerprint.
func (s *Snapshot) Version() uint64 {
	if s == nil {
		return 0
	}
	return s.version
}

// HashVersion returns the placement scheme the snapshot was made with,
// which is always the package's HashVersion; it is here so that code holding
// only a snapshot can log or compare it.
func (s *Snapshot) HashVersion() int { return HashVersion }

// Fingerprint returns a 64-bit digest of the scheme, the members with their
// weights, and the whole slot table. Instances that exchange fingerprints
// can detect that they disagree about owners before routing on it.
func (s *Snapshot) Fingerprint() uint64 {
	if s == nil {
		return 0
	}
	return s.fingerprint
}

// computeFingerprint hashes the parts of the snapshot that decide owners.
// The version counter is left out: the same table reached by different
// histories routes identically.
func computeFingerprint(members []Member, table []uint16) uint64 {
	buf := make([]byte, 0, 16+len(table)*2+len(members)*16)
	buf = append(buf, HashVersion)
	for _, m := range members {
		buf = appendUvarint(buf, uint64(len(m.Name)))
		buf = append(buf, m.Name...)
		buf = appendUvarint(buf, uint64(m.Weight))
	}
	for _, owner := range table {
		buf = append(buf, byte(owner), byte(owner>>8))
	}
	return xxh64(buf)
}
