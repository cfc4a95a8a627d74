package coordinator

import "github.com/payonce/payonce/internal/errs"

// Problem types clients can branch on; each names a more specific problem
// than its kind.
const (
	TypeLockHeld      = "lock-held"
	TypeLockNotFound  = "lock-not-found"
	TypeLeaseNotHeld  = "lease-not-held"
	TypeLeaseExpired  = "lease-expired"
	TypeMemberUnknown = "member-not-found"
	TypeNotLeader     = "not-leader"
	TypeUnconfirmed   = "commit-unconfirmed"
)

var (
	// ErrLockHeld means another lease holds the lock (and no wait was asked
	// for, or the wait ran out).
	ErrLockHeld = errs.E(errs.Conflict, "lock is held by another lease").WithType(TypeLockHeld).WithRetryAfter(1)
	// ErrLockNotFound means the lock has no holder and no waiters, so there is
	// nothing to keep alive, release or show.
	ErrLockNotFound = errs.E(errs.NotFound, "lock not found").WithType(TypeLockNotFound)
	// ErrLeaseNotHeld means the lease id does not name the lock's current
	// lease: it expired, was released, or never existed.
	ErrLeaseNotHeld = errs.E(errs.Conflict, "lease does not hold the lock").WithType(TypeLeaseNotHeld)
	// ErrLeaseExpired means a retried acquire refers to a lease that has
	// already ended; the caller must acquire afresh with a new request id.
	ErrLeaseExpired = errs.E(errs.Conflict, "the lease granted to this request has ended").WithType(TypeLeaseExpired)
	// ErrMemberNotFound means a heartbeat or deregistration named an instance
	// that is not registered (perhaps it expired); register again.
	ErrMemberNotFound = errs.E(errs.NotFound, "member not registered").WithType(TypeMemberUnknown)
	// ErrNotLeader means this replica cannot serve the request because it is
	// not the Raft leader and could not forward it.
	ErrNotLeader = errs.E(errs.Unavailable, "not the leader").WithType(TypeNotLeader).WithRetryAfter(1)
	// ErrUnconfirmed means a write was proposed but its commit was not
	// confirmed in time (a leader change or shutdown intervened); it may
	// still take effect. Retrying an acquire with the same request id is safe.
	ErrUnconfirmed = errs.E(errs.Unavailable, "write not confirmed; it may or may not have taken effect").WithType(TypeUnconfirmed).WithRetryAfter(1)
)
