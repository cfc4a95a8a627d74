package coordinator

import (
	"context"

	"github.com/payonce/payonce/internal/errs"
)

// Caller is the authenticated party behind a request: which service and
// which instance of it, as its client certificate proved (the transport
// reads the certificate; this package only sees the result). The zero
// Caller is "nobody proved anything": a coordinator run without TLS, whose
// every request carries it.
type Caller struct {
	Service  string
	Instance string
}

// String is the caller as the log records it ("payments/payments-1"), or ""
// for the zero Caller. A lease, a queued acquire and a member entry keep the
// string of the caller that created them, and only the same string may
// change them (see fsm's checkHolder).
func (c Caller) String() string {
	if c == (Caller{}) {
		return ""
	}
	return c.Service + "/" + c.Instance
}

// Admin is the service of the operator's identity: the only one the
// cluster-admin routes (voters) accept. It matches internal/identity.Admin.
const Admin = "admin"

// CoordinatorService is the service of the coordinator nodes' own
// identities: they may ask each other about themselves (the admitter) and
// forward a caller's request to the leader on its behalf.
const CoordinatorService = "coordinator"

// Console is the service of the console's identity: a read-only operator
// view, shown every lock a node lists (Policy.SeesLock) but allowed to
// change nothing a service's identity could not.
const Console = "console"

type callerKey struct{}

// WithCaller returns ctx carrying the authenticated caller.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller ctx carries; ok is false when the
// transport authenticated nobody.
func CallerFrom(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// Problem types of refused callers.
const (
	TypeNotHolder     = "not-holder"
	TypeLimitExceeded = "limit-exceeded"
	TypeMemberTaken   = "member-taken"
	// TypeLockNotInNamespace refuses a lock name outside the caller's
	// service's namespace (LockNamespace).
	TypeLockNotInNamespace = "lock-not-in-namespace"
)

var (
	// ErrUnauthenticated means the request proved no identity (no client
	// certificate) where one is required.
	ErrUnauthenticated = errs.E(errs.Unauthorized, "a client certificate from the stack's CA is required")
	// ErrNotHolder means the lease, acquire request or member entry named
	// belongs to another identity.
	ErrNotHolder = errs.E(errs.Forbidden, "held by another identity").WithType(TypeNotHolder)
	// ErrMemberTaken means a live member entry was registered by another
	// identity; it cannot be taken over until it expires or is removed.
	ErrMemberTaken = errs.E(errs.Conflict, "a live member of that name was registered by another identity").WithType(TypeMemberTaken)
	// ErrTooManyLocks means the caller already holds or waits for as many
	// locks as its identity may.
	ErrTooManyLocks = errs.E(errs.Forbidden, "this identity holds or waits for as many locks as it may").WithType(TypeLimitExceeded)
)
