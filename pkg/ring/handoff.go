package ring

import "sort"

// SlotMove says that the keys of slots First through Last (inclusive)
// change owner from From to To. From is "" when the old ring was empty and
// To is "" when the new ring is.
type SlotMove struct {
	First, Last int
	From, To    string
}

// Handoff lists the slots whose owner differs between two snapshots: the
// work a member must do to give away or take over keys. Slot numbers refer
// to a table of SlotCount slots, the larger of the two tables, so a key's
// slot is Hash(key) & (SlotCount-1).
type Handoff struct {
	SlotCount int
	Moves     []SlotMove // in slot order, adjacent slots with the same move merged
}

// Diff returns the Handoff from one snapshot to the next. With Rebalance,
// every move has the changed member at one end.
func Diff(from, to *Snapshot) Handoff {
	slotCount := max(from.SlotCount(), to.SlotCount())
	h := Handoff{SlotCount: slotCount}
	for slot := range slotCount {
		was := ownerAt(from, slot)
		now := ownerAt(to, slot)
		if was == now {
			continue
		}
		if n := len(h.Moves); n > 0 {
			if last := &h.Moves[n-1]; last.Last == slot-1 && last.From == was && last.To == now {
				last.Last = slot
				continue
			}
		}
		h.Moves = append(h.Moves, SlotMove{First: slot, Last: slot, From: was, To: now})
	}
	return h
}

// ownerAt returns the owner of slot in a table that may be smaller than the
// one slot indexes: a smaller power-of-two table keeps the keys of slot s in
// slot s&mask.
func ownerAt(s *Snapshot, slot int) string {
	if s.SlotCount() == 0 {
		return ""
	}
	return s.names[s.table[uint64(slot)&s.mask]]
}

// Lookup returns the move that key is part of, and false if key stays where
// it is.
func (h Handoff) Lookup(key string) (SlotMove, bool) {
	if h.SlotCount == 0 {
		return SlotMove{}, false
	}
	slot := int(Hash(key) & uint64(h.SlotCount-1))
	i := sort.Search(len(h.Moves), func(i int) bool { return h.Moves[i].Last >= slot })
	if i < len(h.Moves) && h.Moves[i].First <= slot {
		return h.Moves[i], true
	}
	return SlotMove{}, false
}

// MovedSlots returns how many slots change owner; divided by SlotCount it
// is the expected share of keys that move.
func (h Handoff) MovedSlots() int {
	n := 0
	for _, m := range h.Moves {
		n += m.Last - m.First + 1
	}
	return n
}
