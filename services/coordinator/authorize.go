package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/errs"
)

// Policy is what an authenticated caller may ask of the coordinator. The
// ownership rules themselves (only a lease's holder keeps it alive or
// releases it, only a member entry's registrant heartbeats it) are decided
// in the replicated log, where expiry and grants are; the policy adds what
// needs no state: which lock names a service may use (its namespace, see
// LockNamespace), who may touch which member entry, and the limits.
type Policy struct {
	// Required refuses every request that proved no identity (401). Set it
	// whenever the API is served over mutual TLS; without it, requests
	// with no caller pass unchecked (a coordinator run without TLS).
	Required bool
	// MaxLeaseTTL caps a lease's and a registration's TTL: a crashed (or
	// malicious) holder blocks a lock, or keeps a member on the ring, at
	// most this long.
	MaxLeaseTTL time.Duration
	// MaxWait caps how long an acquire may queue.
	MaxWait time.Duration
	// MaxLocksPerCaller caps how many locks one identity holds or waits for
	// at once (0: no limit); enforced in the log (fsm).
	MaxLocksPerCaller int
}

// Default limits of DefaultPolicy. Payments holds a customer's lock for
// 15 s and waits 10 s for it by default; a minute leaves room for slower
// deployments and still ends an abandoned lock's blockade quickly.
const (
	DefaultMaxLeaseTTL       = time.Minute
	DefaultMaxWait           = time.Minute
	DefaultMaxLocksPerCaller = 1024
)

// DefaultPolicy is the policy of a coordinator behind mutual TLS.
func DefaultPolicy() Policy {
	return Policy{Required: true, MaxLeaseTTL: DefaultMaxLeaseTTL, MaxWait: DefaultMaxWait, MaxLocksPerCaller: DefaultMaxLocksPerCaller}
}

// caller returns the request's caller, or ErrUnauthenticated when the
// policy requires one and there is none. ok is false when there is no
// caller and none is required: nothing is checked then.
func (p Policy) caller(ctx context.Context) (c Caller, ok bool, err error) {
	c, _ = CallerFrom(ctx)
	if c == (Caller{}) {
		if p.Required {
			return c, false, ErrUnauthenticated
		}
		return c, false, nil
	}
	return c, true, nil
}

// Authenticated checks that the request proved an identity, if the policy
// requires one.
func (p Policy) Authenticated(ctx context.Context) error {
	_, _, err := p.caller(ctx)
	return err
}

// Admin checks that the caller is the operator: the cluster-admin routes
// (adding and removing voters) change who decides every grant.
func (p Policy) Admin(ctx context.Context) error {
	c, ok, err := p.caller(ctx)
	if err != nil || !ok {
		return err
	}
	if c.Service != Admin {
		return errs.E(errs.Forbidden, fmt.Sprintf("cluster administration needs the %s identity, not %s", Admin, c))
	}
	return nil
}

// Peer checks that the caller is a coordinator node or the operator: a
// node describes itself (its Raft address, its incarnation) to them only.
func (p Policy) Peer(ctx context.Context) error {
	c, ok, err := p.caller(ctx)
	if err != nil || !ok {
		return err
	}
	if c.Service != CoordinatorService && c.Service != Admin {
		return errs.E(errs.Forbidden, fmt.Sprintf("only coordinator nodes and the %s identity may ask this, not %s", Admin, c))
	}
	return nil
}

// member checks that c may register or heartbeat the entry service/instance:
// it is that instance. An instance is its own identity, so one identity
// has at most one entry: the policy's limit of members per identity.
func (p Policy) member(c Caller, service, instance string, adminToo bool) error {
	if c.Service == service && c.Instance == instance {
		return nil
	}
	if adminToo && c.Service == Admin {
		return nil
	}
	return errs.E(errs.Forbidden, fmt.Sprintf("%s may change only its own member entry, not %s/%s", c, service, instance)).WithType(TypeNotHolder)
}

// LockNamespace returns the namespace of lock name: the part before its
// first ":" ("payments" for "payments:customer:shop:alice"), or "" when it
// has none. A service's identity may use only the locks of its own
// namespace, so one service can neither take nor queue for nor fence
// another's locks. The separator cannot appear in an identity's service
// (a DNS label), so no two services' namespaces overlap.
func LockNamespace(name string) string {
	ns, _, ok := strings.Cut(name, ":")
	if !ok {
		return ""
	}
	return ns
}

// lock checks that c may use the lock name: it is in c's service's
// namespace, or c is the operator.
func (p Policy) lock(c Caller, name string) error {
	if c.Service == Admin || LockNamespace(name) == c.Service {
		return nil
	}
	return errs.E(errs.Forbidden, fmt.Sprintf("%s may use only locks named %s:<name>, not %q", c, c.Service, name)).WithType(TypeLockNotInNamespace)
}

// lockAccess checks that the request's caller may use the lock name (an
// identity is required when the policy says so; without one nothing is
// checked).
func (p Policy) lockAccess(ctx context.Context, name string) error {
	c, ok, err := p.caller(ctx)
	if err != nil || !ok {
		return err
	}
	return p.lock(c, name)
}

// SeesLock reports whether c is shown lock name's details (its name, holder
// and token) where locks are listed (a node's status): the operator and the
// read-only console see every lock, a service the locks of its namespace.
// Everyone else is shown how many locks are held, not which. Without an
// identity (no TLS) every lock is shown, as it always was.
func (p Policy) SeesLock(c Caller, name string) bool {
	if c == (Caller{}) {
		return !p.Required
	}
	return c.Service == Admin || c.Service == Console || LockNamespace(name) == c.Service
}

func limitExceeded(field string, got, limit time.Duration) error {
	return errs.E(errs.Forbidden, fmt.Sprintf("%s %v is above the %v an identity may ask for", field, got, limit)).
		WithType(TypeLimitExceeded).WithFields(errs.FieldError{Field: field, Reason: fmt.Sprintf("must be at most %d", limit.Milliseconds())})
}

// Authorize returns svc behind p: every call is checked against the caller
// the transport put in its context (WithCaller). It is a service
// middleware, so the rules sit beside what they protect whatever transport
// carries the calls.
func Authorize(svc Service, p Policy) Service { return authorized{next: svc, p: p} }

type authorized struct {
	next Service
	p    Policy
}

func (a authorized) Acquire(ctx context.Context, req AcquireRequest) (Lease, error) {
	c, ok, err := a.p.caller(ctx)
	if err != nil {
		return Lease{}, err
	}
	if ok {
		if err := a.p.lock(c, req.Lock); err != nil {
			return Lease{}, err
		}
		if a.p.MaxLeaseTTL > 0 && req.TTL > a.p.MaxLeaseTTL {
			return Lease{}, limitExceeded("ttl_ms", req.TTL, a.p.MaxLeaseTTL)
		}
		if a.p.MaxWait > 0 && req.Wait > a.p.MaxWait {
			return Lease{}, limitExceeded("wait_ms", req.Wait, a.p.MaxWait)
		}
		req.MaxLocks = a.p.MaxLocksPerCaller
	}
	return a.next.Acquire(ctx, req)
}

// KeepAlive and Release need an identity whose namespace holds the lock;
// whether it is the holder's is decided in the log (fsm's checkHolder).
func (a authorized) KeepAlive(ctx context.Context, lock, leaseID string) (Lease, error) {
	if err := a.p.lockAccess(ctx, lock); err != nil {
		return Lease{}, err
	}
	return a.next.KeepAlive(ctx, lock, leaseID)
}

// KeepAliveBatch needs an identity; each lease of the batch is renewed
// only for its holder, decided in the log by the same check as a single
// keepalive. A batch naming a lock outside the caller's namespace is
// refused whole: no honest holder sends one (it could hold no such lease).
func (a authorized) KeepAliveBatch(ctx context.Context, refs []LeaseRef) ([]Renewal, error) {
	if err := a.p.Authenticated(ctx); err != nil {
		return nil, err
	}
	for _, r := range refs {
		if err := a.p.lockAccess(ctx, r.Lock); err != nil {
			return nil, err
		}
	}
	return a.next.KeepAliveBatch(ctx, refs)
}

func (a authorized) Release(ctx context.Context, lock, leaseID string) error {
	if err := a.p.lockAccess(ctx, lock); err != nil {
		return err
	}
	return a.next.Release(ctx, lock, leaseID)
}

// Lock is shown to the services whose namespace holds it (and to the
// operator and the console, as in a node's status); the lease id only to
// the holder: with it, anyone could keep the lease alive or release it
// where identities are not checked, and no one else needs it.
func (a authorized) Lock(ctx context.Context, name string, opts ReadOptions) (Lock, error) {
	c, ok, err := a.p.caller(ctx)
	if err != nil {
		return Lock{}, err
	}
	if ok && !a.p.SeesLock(c, name) {
		return Lock{}, a.p.lock(c, name)
	}
	l, err := a.next.Lock(ctx, name, opts)
	if err != nil || l.Holder == nil {
		return l, err
	}
	// Without TLS nobody has an identity and every lease is held by the
	// empty one: the id is shown, as it always was.
	if l.Holder.Holder != c.String() {
		h := *l.Holder
		h.ID = ""
		l.Holder = &h
	}
	return l, nil
}

func (a authorized) Register(ctx context.Context, m Member) (Member, error) {
	c, ok, err := a.p.caller(ctx)
	if err != nil {
		return Member{}, err
	}
	if ok {
		if err := a.p.member(c, m.Service, m.Instance, true); err != nil {
			return Member{}, err
		}
		if a.p.MaxLeaseTTL > 0 && m.TTL > a.p.MaxLeaseTTL {
			return Member{}, limitExceeded("ttl_ms", m.TTL, a.p.MaxLeaseTTL)
		}
	}
	return a.next.Register(ctx, m)
}

func (a authorized) Heartbeat(ctx context.Context, service, instance string) error {
	c, ok, err := a.p.caller(ctx)
	if err != nil {
		return err
	}
	if ok {
		if err := a.p.member(c, service, instance, false); err != nil {
			return err
		}
	}
	return a.next.Heartbeat(ctx, service, instance)
}

func (a authorized) Deregister(ctx context.Context, service, instance string) error {
	c, ok, err := a.p.caller(ctx)
	if err != nil {
		return err
	}
	if ok {
		if err := a.p.member(c, service, instance, true); err != nil {
			return err
		}
	}
	return a.next.Deregister(ctx, service, instance)
}

func (a authorized) Members(ctx context.Context, service string, waitVersion uint64, opts ReadOptions) (Members, error) {
	if err := a.p.Authenticated(ctx); err != nil {
		return Members{}, err
	}
	return a.next.Members(ctx, service, waitVersion, opts)
}
