package raftnode

import (
	"slices"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/payonce/payonce/services/coordinator"
)

// NodeStatus reports this node's own view of the cluster: its role, term and
// log indexes as its raft instance sees them, the leader and voters it knows,
// and the locks held in its replica. It reads local state only, so it
// answers on a node that has lost the leader too.
func (n *Node) NodeStatus() coordinator.NodeStatus {
	stats := n.raft.Stats()
	num := func(key string) uint64 {
		v, _ := strconv.ParseUint(stats[key], 10, 64)
		return v
	}
	leader, _ := n.Leader()
	st := coordinator.NodeStatus{
		ID:           n.cfg.ID,
		State:        n.raft.State().String(),
		Term:         num("term"),
		LastLogIndex: num("last_log_index"),
		CommitIndex:  num("commit_index"),
		// The machine's index, not raft.AppliedIndex: the latter counts
		// entries handed to the FSM goroutine, not entries it has applied.
		AppliedIndex: n.machine.Index(),
		LeaderID:     leader,
		Voters:       []string{},
		Locks:        n.machine.HeldLocks(),
	}
	st.LocksHeld = len(st.Locks)
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters = append(st.Voters, string(s.ID))
			}
		}
		slices.Sort(st.Voters)
	}
	return st
}
