// Package fsm is the coordinator's replicated state machine: the locks,
// leases, waiters and members that every Raft replica holds, and the one
// function, Apply, that changes them.
//
// Raft guarantees that every replica applies the same log entries in the same
// order. That is only useful if applying an entry is deterministic: the same
// state and the same entry must give the same new state on every machine. So
// Apply never reads a clock, never draws a random number and never iterates a
// map in random order where that would change the outcome. Time travels inside
// the entry instead: the leader stamps each command with its own monotonic
// clock when it proposes it.
//
// # Log time
//
// The machine keeps its own clock, "log time", which only moves when an entry
// is applied. Within one leader's term it advances by what that leader's clock
// measured between its entries. When a new leader's first entry arrives, log
// time does not jump to the new leader's clock (which has an unrelated origin):
// it continues from where the old leader left it. In effect every deadline is
// rebased, deadline' = newNow + (deadline - lastLogTime), so a lease loses no
// time because the leader changed; it is stretched at most by the gap between
// the old leader's last entry and the new leader's first, roughly one election
// timeout. Since log time never runs faster than real time, a lease never
// expires on the server before its holder's own deadline (send time of the
// last keepalive + TTL) has passed.
//
// # Fencing tokens
//
// A grant's token is the Raft index of the entry that granted it. When one
// entry grants several locks (a tick that expires many leases and promotes
// their waiters) the later grants take the next numbers up, and the next
// entry's grants start above them, so tokens strictly increase across the
// whole cluster.
package fsm
