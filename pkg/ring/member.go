package ring

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Member is one participant of the ring, such as a service instance.
type Member struct {
	// Name identifies the member; it is what Owner and Successors return.
	// It must be non-empty and unique within a ring.
	Name string
	// Weight is the member's share of keys relative to the others. Zero
	// means 1, so members without weights share keys equally.
	Weight uint32
}

const (
	// MaxMembers is the largest number of members a ring holds: a slot
	// stores its owner's index in 16 bits.
	MaxMembers = 1<<16 - 1
	// MaxWeight is the largest Weight a member may have. The bound keeps the
	// exact integer arithmetic of rebalancing far from overflow.
	MaxWeight = 1 << 16
)

// Errors returned for a member list the ring cannot hold. They are wrapped
// with the offending member, so test for them with errors.Is.
var (
	ErrEmptyName       = errors.New("ring: member name is empty")
	ErrDuplicateMember = errors.New("ring: member listed twice")
	ErrWeightTooLarge  = fmt.Errorf("ring: member weight exceeds %d", MaxWeight)
	ErrTooManyMembers  = fmt.Errorf("ring: more than %d members", MaxMembers)
)

// normalize returns a copy of members with default weights filled in, in
// name order. Sorting by name is what makes every result independent of the
// order in which the caller listed (or learned of) the members.
func normalize(members []Member) ([]Member, error) {
	if len(members) > MaxMembers {
		return nil, fmt.Errorf("%d members: %w", len(members), ErrTooManyMembers)
	}
	sorted := make([]Member, len(members))
	for i, m := range members {
		if m.Name == "" {
			return nil, fmt.Errorf("member %d: %w", i, ErrEmptyName)
		}
		if m.Weight > MaxWeight {
			return nil, fmt.Errorf("member %q weight %d: %w", m.Name, m.Weight, ErrWeightTooLarge)
		}
		if m.Weight == 0 {
			m.Weight = 1
		}
		sorted[i] = m
	}
	slices.SortFunc(sorted, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].Name == sorted[i-1].Name {
			return nil, fmt.Errorf("member %q: %w", sorted[i].Name, ErrDuplicateMember)
		}
	}
	return sorted, nil
}
