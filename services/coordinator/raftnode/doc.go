// Package raftnode runs one replica of the coordinator on hashicorp/raft.
//
// Raft keeps a log of commands identical on a majority of replicas. One
// replica is the leader: it appends every command, sends it to the others and
// declares it committed once a majority has written it to disk. Every replica
// then applies committed commands, in order, to its copy of the state machine
// (package fsm). If the leader dies, the others notice missing heartbeats
// after an election timeout and elect a new leader among those whose log is
// complete, so nothing a client was told succeeded is lost.
//
// A Node wires the pieces: a durable log and stable store (raft-wal, or
// raft-boltdb/v2 if configured; see logstore.go), file snapshots that let the log be truncated, a TCP transport, and the
// adapter that feeds committed entries to the fsm.Machine in batches. It also
// plays the leader's part in lease expiry: while leading it proposes tick
// entries stamped with its clock, so leases expire through the log and never
// because some replica's clock said so.
//
// Every node is started with the same list of peers and bootstraps the
// cluster only if it has no Raft state yet, so a cluster needs no special
// first node (see docs/adr/0004-raft-coordinator.md, which also records why
// heartbeats do not take NetworkTransport's fast path).
package raftnode
