package fsm

import "github.com/payonce/payonce/services/coordinator"

// HeldLocks returns every lock that has a holder as of the last applied
// entry, sorted by name. Remaining times are in log time, like Lock's.
func (m *Machine) HeldLocks() []coordinator.Lock {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := []coordinator.Lock{}
	for _, name := range sortedKeys(m.st.Locks) {
		l := m.st.Locks[name]
		if l.Holder == nil {
			continue
		}
		out = append(out, coordinator.Lock{Name: name, Holder: m.st.view(name, l.Holder), Waiters: len(l.Waiters)})
	}
	return out
}
