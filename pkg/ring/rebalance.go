package ring

import (
	"cmp"
	"slices"
)

const (
	// slotsPerMember is the least number of slots per member a table is
	// sized for. A member's share of keys can be off from the ideal by at
	// most one slot, so 128 bounds that error by 1/128 (0.8%), while a
	// table of 16-bit entries stays at 2-4 bytes x 128 per member.
	slotsPerMember = 128
	minSlotBits    = 10 // 1024 slots, so tiny rings still spread keys finely
	maxSlotBits    = 23 // 2^23 >= MaxMembers*slotsPerMember
	unassigned     = 0xFFFF
)

// slotBitsFor returns log2 of the table size a ring of n members is built
// with.
func slotBitsFor(n int) int {
	b := minSlotBits
	for b < maxSlotBits && 1<<b < n*slotsPerMember {
		b++
	}
	return b
}

// Build returns the canonical ring for members: a pure function of the
// member set, so every caller that passes the same members, in any order,
// gets an identical table (same Fingerprint). Use it to start a ring, or to
// recover agreement when parties no longer share a history; use Rebalance
// for changes, which moves far fewer keys.
//
// Every member owns its weighted share of slots to within one slot.
func Build(members []Member) (*Snapshot, error) {
	return Rebalance(nil, members)
}

// Rebalance returns the ring for members that moves as few slots as
// possible away from prev: slots of members that left are dealt to the
// members furthest below their share, then slots are moved one at a time
// from the member furthest above its share to the one furthest below, until
// no move would even things out. A single join therefore takes exactly its
// share from the fullest members, a leave hands its slots only to the
// emptiest, and no slot ever moves between two members that were both in
// prev and kept their weight.
//
// The result is a pure function of prev's table and the member set (the
// order of members does not matter), so parties that hold the same prev and
// apply the same change agree. It depends on history, though: reaching a
// member set through different sequences of changes can give different
// tables. See docs/adr/0003-ring-design.md for why, and how the coordinator
// keeps instances agreeing.
//
// A nil or empty prev gives Build's canonical table. If the members are the
// same as prev's, prev itself is returned. Rebalance never panics; it
// returns an error wrapping ErrEmptyName, ErrDuplicateMember,
// ErrWeightTooLarge or ErrTooManyMembers for a member list it cannot hold.
func Rebalance(prev *Snapshot, members []Member) (*Snapshot, error) {
	sorted, err := normalize(members)
	if err != nil {
		return nil, err
	}
	if prev == nil {
		prev = &Snapshot{}
	}
	if len(prev.table) > 0 && slices.Equal(prev.members, sorted) {
		return prev, nil
	}
	next := &Snapshot{version: prev.version + 1, members: sorted}
	if len(sorted) == 0 {
		next.fingerprint = computeFingerprint(nil, nil)
		return next, nil
	}
	next.names = make([]string, len(sorted))
	for i, m := range sorted {
		next.names[i] = m.Name
	}

	slotCount := max(len(prev.table), 1<<slotBitsFor(len(sorted)))
	table := make([]uint16, slotCount)
	if len(prev.table) == 0 {
		for i := range table {
			table[i] = unassigned
		}
	} else {
		// Doubling the table copies it twice over: slot i of the bigger
		// table holds the keys of slot i&oldMask, so growth moves nothing.
		toNew := remapIndices(prev.members, sorted)
		for i := range table {
			table[i] = toNew[prev.table[uint64(i)&prev.mask]]
		}
	}
	p := newPlacement(sorted, table)
	p.dealOrphans()
	p.evenOut()

	next.table = table
	next.mask = uint64(slotCount - 1)
	next.fingerprint = computeFingerprint(sorted, table)
	return next, nil
}

// remapIndices maps each member index of from to its index in to, or to
// unassigned if it is not in to. Both lists are in name order.
func remapIndices(from, to []Member) []uint16 {
	out := make([]uint16, len(from))
	j := 0
	for i, m := range from {
		for j < len(to) && to[j].Name < m.Name {
			j++
		}
		if j < len(to) && to[j].Name == m.Name {
			out[i] = uint16(j)
		} else {
			out[i] = unassigned
		}
	}
	return out
}

// placement is the working state of one Rebalance. A member's excess is
// how many slots it holds beyond its fair share, scaled by the total weight
// so that it is an exact integer: excess = slots*totalWeight -
// slotCount*weight. A member's share is within one slot of fair exactly
// when the spread of excesses is at most totalWeight.
type placement struct {
	table       []uint16
	totalWeight int64
	excess      []int64
	owned       [][]uint32 // slots of each member
	ownedSorted []bool     // whether owned[m] is in descending slotPriority
	scans       []int      // how many times each member's slots were scanned for a donation
	orphans     []uint32   // slots whose member left
	fullest     memberHeap // top: largest excess
	emptiest    memberHeap // top: smallest excess
}

func newPlacement(members []Member, table []uint16) *placement {
	p := &placement{
		table:       table,
		excess:      make([]int64, len(members)),
		owned:       make([][]uint32, len(members)),
		ownedSorted: make([]bool, len(members)),
		scans:       make([]int, len(members)),
	}
	for _, m := range members {
		p.totalWeight += int64(m.Weight)
	}
	// Group slots by member with a counting sort: one pass to count, one
	// to place, all slices cut from one backing array.
	counts := make([]int, len(members)+1)
	for _, owner := range table {
		if owner == unassigned {
			counts[len(members)]++
		} else {
			counts[owner]++
		}
	}
	backing := make([]uint32, len(table))
	offset := 0
	for m := range members {
		p.owned[m] = backing[offset : offset : offset+counts[m]]
		offset += counts[m]
	}
	p.orphans = backing[offset:offset]
	for slot, owner := range table {
		if owner == unassigned {
			p.orphans = append(p.orphans, uint32(slot))
		} else {
			p.owned[owner] = append(p.owned[owner], uint32(slot))
		}
	}
	slotCount := int64(len(table))
	for m, member := range members {
		p.excess[m] = int64(counts[m])*p.totalWeight - slotCount*int64(member.Weight)
	}
	// Ties break by member index, that is by name, so the outcome never
	// depends on anything but the inputs.
	p.fullest.init(len(members), func(a, b int32) bool {
		return p.excess[a] > p.excess[b] || (p.excess[a] == p.excess[b] && a < b)
	})
	p.emptiest.init(len(members), func(a, b int32) bool {
		return p.excess[a] < p.excess[b] || (p.excess[a] == p.excess[b] && a < b)
	})
	return p
}

// dealOrphans gives each slot of a departed member, highest priority
// first, to the member currently furthest below its share.
func (p *placement) dealOrphans() {
	sortByPriority(p.orphans)
	for _, slot := range p.orphans {
		p.give(slot, p.emptiest.top())
	}
	p.orphans = nil
}

// evenOut moves slots from the fullest member to the emptiest while that
// narrows the gap between them. Each move lowers the sum of squared
// excesses, so the loop ends, and it ends with every member within one slot
// of its share.
func (p *placement) evenOut() {
	for {
		donor, receiver := p.fullest.top(), p.emptiest.top()
		if p.excess[donor]-p.excess[receiver] <= p.totalWeight {
			return
		}
		slot := p.takeFrom(donor)
		p.excess[donor] -= p.totalWeight
		p.fullest.fix(donor)
		p.emptiest.fix(donor)
		p.give(slot, receiver)
	}
}

func (p *placement) give(slot uint32, receiver int32) {
	p.table[slot] = uint16(receiver)
	p.owned[receiver] = append(p.owned[receiver], slot)
	p.ownedSorted[receiver] = false
	p.excess[receiver] += p.totalWeight
	p.fullest.fix(receiver)
	p.emptiest.fix(receiver)
}

// takeFrom removes and returns the donor's slot of highest priority. A
// donor usually gives up a slot or two, so it scans for the best one; only a
// donor that keeps giving sorts its slots once, so that a rebalance from one
// member to thousands stays O(slots log slots).
func (p *placement) takeFrom(donor int32) uint32 {
	slots := p.owned[donor]
	if p.ownedSorted[donor] {
		p.owned[donor] = slots[1:]
		return slots[0]
	}
	p.scans[donor]++
	if p.scans[donor] > 8 {
		sortByPriority(slots)
		p.ownedSorted[donor] = true
		p.owned[donor] = slots[1:]
		return slots[0]
	}
	best := 0
	bestPriority := slotPriority(slots[0])
	for i := 1; i < len(slots); i++ {
		if pr := slotPriority(slots[i]); pr > bestPriority {
			best, bestPriority = i, pr
		}
	}
	slot := slots[best]
	// Swap-remove; order does not matter until the list is sorted.
	slots[best] = slots[len(slots)-1]
	p.owned[donor] = slots[:len(slots)-1]
	return slot
}

// sortByPriority puts slots in descending slotPriority, the order in which
// they are handed over.
func sortByPriority(slots []uint32) {
	slices.SortFunc(slots, func(a, b uint32) int {
		return cmp.Compare(slotPriority(b), slotPriority(a))
	})
}

// memberHeap is a binary heap of member indices that can restore its order
// after one member's key changes (fix), which container/heap can only do
// through an interface and an extra index field.
type memberHeap struct {
	items  []int32 // heap-ordered member indices
	pos    []int32 // pos[m] is m's position in items
	before func(a, b int32) bool
}

func (h *memberHeap) init(n int, before func(a, b int32) bool) {
	h.items = make([]int32, n)
	h.pos = make([]int32, n)
	h.before = before
	for i := range h.items {
		h.items[i] = int32(i)
		h.pos[i] = int32(i)
	}
	for i := n/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h *memberHeap) top() int32 { return h.items[0] }

func (h *memberHeap) fix(m int32) {
	i := int(h.pos[m])
	if !h.down(i) {
		h.up(i)
	}
}

func (h *memberHeap) swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i]] = int32(i)
	h.pos[h.items[j]] = int32(j)
}

func (h *memberHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.before(h.items[i], h.items[parent]) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts item i towards the leaves and reports whether it moved.
func (h *memberHeap) down(i int) bool {
	start := i
	for {
		child := 2*i + 1
		if child >= len(h.items) {
			break
		}
		if right := child + 1; right < len(h.items) && h.before(h.items[right], h.items[child]) {
			child = right
		}
		if !h.before(h.items[child], h.items[i]) {
			break
		}
		h.swap(i, child)
		i = child
	}
	return i > start
}
