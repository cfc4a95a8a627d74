// Package http is the coordinator's REST/JSON API on go-kit: the service is
// wrapped in endpoints (one per operation, with a tracing middleware) and the
// endpoints are served by go-kit HTTP handlers with decode and encode
// functions, errors being written as RFC 9457 problem+json by httpkit.
//
// Only the Raft leader can write. A write that reaches a follower is
// forwarded to the leader's HTTP address (the reverse proxy in forward.go);
// a request that is already forwarded, or that arrives while no leader is
// known, is answered 503 with the leader's address when there is one, and the
// client (pkg/lock) follows it. Reads are linearizable by default (the leader
// confirms it still leads before answering); ?stale=true lets any replica
// answer from its own, possibly older, state.
package http
