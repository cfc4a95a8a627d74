package raftnode

import (
	"github.com/hashicorp/raft"
)

// serialHeartbeats wraps a transport so that heartbeats are not handled on the
// connection's goroutine (NetworkTransport's "fast path") but go through the
// consumer channel to Raft's main loop like every other RPC.
//
// Why: hashicorp/raft issue #695 (open, no fix released in v1.7.3 or v1.8.0)
// is a log-divergence bug found by Antithesis: a heartbeat processed on the
// fast path can bump the follower's term while the main loop is in the middle
// of handling another RPC, and the two race. Without the fast path every RPC
// is processed by the one main-loop goroutine, so the race cannot happen. The
// price is that a heartbeat may queue behind a large AppendEntries; with
// election timeouts of hundreds of milliseconds and small entries that delay
// is far below what would trigger an election. See ADR 0004.
type serialHeartbeats struct {
	raft.Transport
}

// SetHeartbeatHandler deliberately ignores the handler: see the type comment.
func (serialHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}

// RequestPreVote forwards pre-vote requests; raft enables pre-vote only when
// the transport implements raft.WithPreVote, so the wrapper must too.
func (t serialHeartbeats) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if pv, ok := t.Transport.(raft.WithPreVote); ok {
		return pv.RequestPreVote(id, target, args, resp)
	}
	return raft.ErrUnsupportedProtocol
}

// Close closes the wrapped transport's listener and connections, which
// raft.Raft.Shutdown does only for transports implementing raft.WithClose.
func (t serialHeartbeats) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

var (
	_ raft.WithPreVote = serialHeartbeats{}
	_ raft.WithClose   = serialHeartbeats{}
)
