// Package coordinator is the domain of payonce's coordination service: named
// locks handed out as leases with fencing tokens, and a registry of service
// instances (membership) from which every instance builds the same hash ring.
//
// # Why a coordinator at all
//
// Two payment workers must never charge the same customer at the same time.
// A lock alone does not guarantee that: a holder can pause (GC, a slow disk, a
// VM migration) for longer than its lease, wake up and keep writing while a
// second holder already owns the lock. The coordinator therefore pairs every
// grant with a fencing token, a number that only ever grows. Whoever writes on
// behalf of a lock sends the token along, and the storage (Postgres, see
// pkg/lock.Fence) refuses a token lower than the highest it has seen. A paused
// holder's late write is rejected, whatever its clock believes.
//
// # Leases and time
//
// A lease is a lock grant with a time to live (TTL). The holder extends it with
// keepalives; if it stops, the lease expires and the next waiter gets the lock
// with a higher token. The coordinator is replicated with Raft (see the fsm and
// raftnode packages): every grant, keepalive, release and expiry is an entry of
// one replicated log, so every replica agrees on who holds what. Expiry is
// decided only by log entries the leader commits, never by a replica reading
// its own clock, and the fencing token of a grant is the Raft index of the
// entry that granted it, so it strictly increases across the whole cluster and
// across restarts.
//
// This package holds only the vocabulary: the types, the Service interface and
// the errors. It imports no transport, storage or Raft code; those live in the
// leaf packages beside it (fsm, raftnode, http) and in cmd/coordinator, which
// wires them together.
package coordinator
