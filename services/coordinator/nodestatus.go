package coordinator

// NodeStatus is one coordinator node's own view of the Raft cluster, as its
// raft instance reports it. It is a local view, not a consensus read: a
// follower cut off from the leader still reports the term and leader it last
// knew, which is exactly what an operator (or the console) wants to see
// while a failover happens.
type NodeStatus struct {
	// ID is the node's Raft server id.
	ID string `json:"id"`
	// State is the node's role: Leader, Follower, Candidate or Shutdown.
	State string `json:"state"`
	// Term is the node's current Raft term.
	Term uint64 `json:"term"`
	// LastLogIndex is the index of the last entry in the node's log.
	LastLogIndex uint64 `json:"last_log_index"`
	// CommitIndex is the highest index the node knows to be committed.
	CommitIndex uint64 `json:"commit_index"`
	// AppliedIndex is the index of the last entry the node's state machine
	// has applied (the machine's own index, not raft's dispatch counter).
	AppliedIndex uint64 `json:"applied_index"`
	// LeaderID is the leader this node knows of, or "".
	LeaderID string `json:"leader_id"`
	// Voters lists the voting members of the configuration the node holds.
	Voters []string `json:"voters"`
	// LocksHeld is how many locks have a holder in this node's replica.
	LocksHeld int `json:"locks_held"`
	// Locks are the locks that have a holder in this node's replica of the
	// state machine, by name. On a follower they lag the leader's by the
	// replication delay. A caller is shown only the locks it may see
	// (Policy.SeesLock); LocksHeld counts them all.
	Locks []Lock `json:"locks"`
}
