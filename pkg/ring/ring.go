package ring

import "sync/atomic"

// Ring holds the current Snapshot and swaps it atomically, so readers look
// up owners without locks while a writer installs a new membership. The
// zero Ring is ready to use and empty.
type Ring struct {
	current atomic.Pointer[Snapshot]
}

var emptySnapshot = &Snapshot{}

// Load returns the current snapshot, never nil. Hold on to it for a batch of
// lookups that must agree with each other.
func (r *Ring) Load() *Snapshot {
	if s := r.current.Load(); s != nil {
		return s
	}
	return emptySnapshot
}

// Store installs s as the current snapshot, for instance one received from
// the coordinator.
func (r *Ring) Store(s *Snapshot) {
	r.current.Store(s)
}

// Apply rebalances the current snapshot to members, installs the result and
// returns it. Concurrent Apply calls are serialised by compare-and-swap, so
// each one rebalances from the snapshot the previous one installed.
func (r *Ring) Apply(members []Member) (*Snapshot, error) {
	for {
		old := r.current.Load()
		next, err := Rebalance(old, members)
		if err != nil {
			return nil, err
		}
		if r.current.CompareAndSwap(old, next) {
			return next, nil
		}
	}
}

// Owner returns the owner of key in the current snapshot; see
// Snapshot.Owner.
func (r *Ring) Owner(key string) (string, bool) {
	return r.Load().Owner(key)
}
