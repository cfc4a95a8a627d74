package coordinator

import (
	"context"
	"time"
)

// FenceToken is the number that orders lock grants. It is the Raft log index
// of the entry that granted the lock (or just above it when one entry grants
// several locks), so every grant anywhere in the cluster gets a larger token
// than every grant before it, across leader changes and restarts.
type FenceToken uint64

// Lease is one holder's grant of a lock. It stays valid while the holder keeps
// it alive; its Token is what the holder presents to fenced storage.
type Lease struct {
	// ID identifies the lease; keepalive and release must name it, so a client
	// that lost its lease cannot release (or extend) its successor's.
	ID string `json:"lease_id"`
	// Lock is the name of the locked resource.
	Lock string `json:"lock"`
	// Owner is a free-form label of the holder, for operators.
	Owner string `json:"owner,omitempty"`
	// Holder is the identity the lease was granted to (Caller.String;
	// empty without TLS). Only it may keep the lease alive or release it,
	// and only it is shown the lease ID.
	Holder string `json:"-"`
	// Token is the fencing token of the grant.
	Token FenceToken `json:"token"`
	// Epoch is the cluster's epoch, fixed when the cluster was bootstrapped;
	// fenced storage orders grants by (Epoch, Token), so a cluster rebuilt
	// from nothing (whose tokens restart low) is not fenced out forever.
	Epoch uint64 `json:"epoch,omitempty"`
	// TTL is how long the lease lives after its last keepalive.
	TTL time.Duration `json:"-"`
	// Remaining is the lease time left as of the last applied log entry; it is
	// informative only, clients track their own (shorter) deadline.
	Remaining time.Duration `json:"-"`
}

// Lock is the state of one named lock: its current holder, if any, and how
// many acquirers wait for it in line.
type Lock struct {
	// Name identifies the lock.
	Name string `json:"name"`
	// Holder is the current lease, or nil when the lock is free.
	Holder *Lease `json:"holder,omitempty"`
	// Waiters is the number of queued acquirers.
	Waiters int `json:"waiters"`
}

// Member is one registered instance of a service.
type Member struct {
	// Service names the group the instance belongs to, e.g. "payments".
	Service string `json:"service"`
	// Instance identifies the instance within its service.
	Instance string `json:"instance"`
	// Addr is where other instances reach it, e.g. "10.0.0.5:8080".
	Addr string `json:"addr"`
	// TTL is how long the registration lives after its last heartbeat.
	TTL time.Duration `json:"-"`
}

// Members is a versioned view of one service's instances. Version changes
// whenever the set of instances (or an address) changes, and only then, so an
// instance can rebuild its ring exactly when it must.
type Members struct {
	// Service names the group.
	Service string `json:"service"`
	// Version is the Raft index of the last change to the set.
	Version uint64 `json:"version"`
	// Members lists the live instances sorted by instance id.
	Members []Member `json:"members"`
	// Ring is the service's consistent-hash ring over the instances, as
	// pkg/ring's MarshalBinary encodes it. The coordinator advances it with
	// ring.Rebalance at every change of the set, so it moves only the
	// changed instance's keys; instances decode it rather than build their
	// own (ADR 0003). It changes only when Version does.
	Ring []byte `json:"-"`
	// RingFingerprint is the ring's ring.Snapshot.Fingerprint.
	RingFingerprint uint64 `json:"-"`
}

// AcquireRequest asks for a lock.
type AcquireRequest struct {
	// Lock names the lock.
	Lock string
	// Owner labels the holder (optional).
	Owner string
	// RequestID makes the acquire idempotent: a retried request with the same
	// id returns the lease the first one got instead of taking another, and
	// keeps the place in line the first one took.
	RequestID string
	// Attempt numbers the tries of one request (1, 2, ...). Only the newest
	// attempt the log has seen may withdraw the request, so a cancel from a
	// try whose client has already retried cannot end the retry's lease.
	Attempt uint64
	// TTL is the lease time to live.
	TTL time.Duration
	// Wait, when positive, queues the acquirer (first come, first served) for
	// at most this long if the lock is held; zero fails at once.
	Wait time.Duration
	// MaxLocks is how many locks the caller may hold or wait for at once,
	// this one included; zero means no limit. The authorisation layer
	// (Authorize) sets it from its Policy; clients do not.
	MaxLocks int
}

// ReadOptions tunes a read.
type ReadOptions struct {
	// Stale allows the answer to come from this replica's state without
	// confirming leadership; it may be behind the latest committed write.
	Stale bool
}

// Service is the coordinator's contract, whatever transport carries it.
type Service interface {
	// Acquire grants the lock, or queues for it up to req.Wait.
	Acquire(ctx context.Context, req AcquireRequest) (Lease, error)
	// KeepAlive restarts the lease's TTL; it fails if the lease is gone.
	KeepAlive(ctx context.Context, lock, leaseID string) (Lease, error)
	// Release gives the lock up; the next waiter, if any, gets it.
	Release(ctx context.Context, lock, leaseID string) error
	// Lock reports the state of a lock.
	Lock(ctx context.Context, name string, opts ReadOptions) (Lock, error)
	// BatchRenewer renews many leases in one write.
	BatchRenewer

	// Register adds or refreshes an instance of a service.
	Register(ctx context.Context, m Member) (Member, error)
	// Heartbeat restarts a registration's TTL.
	Heartbeat(ctx context.Context, service, instance string) error
	// Deregister removes an instance.
	Deregister(ctx context.Context, service, instance string) error
	// Members lists a service's instances. With waitVersion > 0 it blocks
	// until the version differs from waitVersion or ctx ends (long poll).
	Members(ctx context.Context, service string, waitVersion uint64, opts ReadOptions) (Members, error)
}
