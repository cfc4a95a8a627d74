package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/payments"
)

// Partitions is the partition design's payments.Locker (ADR 0070). The
// instance leases, from the coordinator, every partition the ring gives it
// (Reconcile), renews all those leases in one request per interval
// (lock.PartitionLeases), and claims each partition's fence row once per
// grant. A charge then costs no coordinator round trip: Acquire checks
// locally that the customer's partition lease is live and serialises the
// customer's work in this process; the writes are fenced on the
// partition's row with its token.
//
// Handoff on a ring change is one procedure, Reconcile, safe to run again
// at any time: a partition that moves away stops taking new work at once,
// its work in flight gets Drain to finish (and is fenced out afterwards in
// any case, by the new owner's claim), then its lease is released; a
// partition that moves here is acquired (waiting for the old owner's
// release or expiry), claimed in PostgreSQL (strictly higher token, which
// waits for the old owner's writes in flight), and only then served.
type Partitions struct {
	// Leases holds this instance's partition leases; Run it beside
	// Reconcile.
	Leases *lock.PartitionLeases
	// Owns reports whether the ring gives this instance the partition
	// named (payments.PartitionName).
	Owns func(partition string) bool
	// OnRing reports whether this instance is on the ring yet; until it
	// is, Owns says nothing and the instance is not ready.
	OnRing func() bool
	// RingChanged, if set, returns a channel closed at the next ring
	// change (membership.Membership.Changed). Run reconciles at once when
	// it closes, so a dead owner's partitions are asked for the moment the
	// coordinator drops it from the ring; the interval is only the
	// fallback.
	RingChanged func() <-chan struct{}
	// Claim makes the lease the holder of the partition's fence row
	// (postgres.Store.ClaimPartition).
	Claim func(ctx context.Context, partition string, t lock.FenceToken) error
	// Drain is how long work in flight on a partition that moves away may
	// take before the lease is released anyway (default 5s).
	Drain time.Duration
	// Logger reports handoffs.
	Logger *slog.Logger

	mu        sync.Mutex
	parts     map[int]*heldPartition
	customers map[string]*customerTurn
	ready     atomic.Bool
}

// heldPartition is one partition this instance holds or is taking over.
type heldPartition struct {
	lease    *lock.Lease // nil while being acquired
	serving  bool        // claimed, and not moving away
	inflight int
	idle     chan struct{} // closed when inflight reaches 0 while draining
}

// customerTurn serialises one customer's work in this process; refs counts
// its holders and waiters, so the entry goes when nobody needs it.
type customerTurn struct {
	turn chan struct{}
	refs int
}

var _ payments.Locker = (*Partitions)(nil)

func (ps *Partitions) init() {
	if ps.parts == nil {
		ps.parts = map[int]*heldPartition{}
		ps.customers = map[string]*customerTurn{}
	}
	if ps.Logger == nil {
		ps.Logger = slog.New(slog.DiscardHandler)
	}
	if ps.Drain <= 0 {
		ps.Drain = 5 * time.Second
	}
}

// Acquire implements payments.Locker without any request: name is a
// customer lock (payments.CustomerLock). It fails with payments.ErrNotOwner
// unless this instance serves the customer's partition under a lease that
// is still certainly held, and then waits (until ctx ends) for the
// customer's earlier work in this process to finish. The ttl is the
// partition lease's, not the caller's.
func (ps *Partitions) Acquire(ctx context.Context, name string, _ time.Duration) (payments.Lease, error) {
	p := payments.PartitionOf(name)
	ps.mu.Lock()
	ps.init()
	hp := ps.parts[p]
	if hp == nil || !hp.serving || hp.lease == nil || !hp.lease.Valid() {
		ps.mu.Unlock()
		return nil, payments.ErrNotOwner
	}
	hp.inflight++
	t := ps.customers[name]
	if t == nil {
		t = &customerTurn{turn: make(chan struct{}, 1)}
		ps.customers[name] = t
	}
	t.refs++
	ps.mu.Unlock()

	select {
	case t.turn <- struct{}{}:
	case <-ctx.Done():
		ps.done(hp, name, t, false)
		return nil, ctx.Err()
	}
	// Checked again: the lease may have lapsed while this waited its turn.
	if !hp.lease.Valid() {
		ps.done(hp, name, t, true)
		return nil, payments.ErrNotOwner
	}
	return &partitionLease{Lease: hp.lease, partition: payments.PartitionName(p), release: func() { ps.done(hp, name, t, true) }}, nil
}

// done ends one unit of work on partition hp for customer name.
func (ps *Partitions) done(hp *heldPartition, name string, t *customerTurn, hadTurn bool) {
	if hadTurn {
		<-t.turn
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if t.refs--; t.refs == 0 {
		delete(ps.customers, name)
	}
	if hp.inflight--; hp.inflight == 0 && hp.idle != nil {
		close(hp.idle)
		hp.idle = nil
	}
}

// partitionLease is the payments.PartitionLease a charge works under.
type partitionLease struct {
	*lock.Lease
	partition string
	once      sync.Once
	release   func()
}

// Partition implements payments.PartitionLease.
func (l *partitionLease) Partition() string { return l.partition }

// Release ends this charge's turn; the partition lease itself stays.
func (l *partitionLease) Release(context.Context) error {
	l.once.Do(l.release)
	return nil
}

// Ready reports whether this instance has, at least once, served every
// partition the ring gave it (a readiness probe: before that, most
// requests would be refused with ErrNotOwner).
func (ps *Partitions) Ready() bool { return ps.ready.Load() }

// Held returns the partitions this instance serves now.
func (ps *Partitions) Held() []int {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []int
	for p := range payments.Partitions {
		if hp := ps.parts[p]; hp != nil && hp.serving && hp.lease != nil && hp.lease.Valid() {
			out = append(out, p)
		}
	}
	return out
}

// Run reconciles held partitions with the ring at every ring change
// (RingChanged) and every interval until ctx ends, then releases them all.
func (ps *Partitions) Run(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// Taken before Reconcile reads the ring: a change while it runs
		// wakes the next round.
		var ringChanged <-chan struct{}
		if ps.RingChanged != nil {
			ringChanged = ps.RingChanged()
		}
		ps.Reconcile(ctx)
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = ps.Leases.Close(rctx)
			return nil
		case <-ringChanged:
		case <-tick.C:
		}
	}
}

// Reconcile moves the held set one step towards the ring's: it starts
// taking over the partitions the ring gives this instance, starts handing
// off the ones it no longer gives, and forgets leases that were lost (to be
// acquired again). Each takeover and handoff runs in its own goroutine;
// calling Reconcile again while they run starts nothing twice.
func (ps *Partitions) Reconcile(ctx context.Context) {
	ps.mu.Lock()
	ps.init()
	all := ps.OnRing == nil || ps.OnRing()
	for p := range payments.Partitions {
		name := payments.PartitionName(p)
		mine := ps.Owns(name)
		hp := ps.parts[p]
		switch {
		case hp != nil && hp.lease != nil && hp.lease.Err() != nil && hp.inflight == 0:
			// Lost (cut off from the coordinator, or refused): forget it;
			// if the ring still says so it is acquired again, with a new,
			// higher token, once the old lease has expired.
			ps.Logger.WarnContext(ctx, "partition lease lost", "partition", name, "token", hp.lease.Token(), "err", hp.lease.Err())
			delete(ps.parts, p)
			hp = nil
		}
		switch {
		case mine && hp == nil:
			hp = &heldPartition{}
			ps.parts[p] = hp
			go ps.takeOver(ctx, p, hp)
			all = false
		case mine && !hp.serving:
			all = false
		case !mine && hp != nil && hp.serving:
			hp.serving = false // no new work from now on
			go ps.handOff(ctx, p, hp)
		}
	}
	ps.mu.Unlock()
	if all {
		ps.ready.Store(true)
	}
}

// takeOver acquires partition p's lease and claims its fence row; the
// partition is served from then on. Failure leaves it to the next
// Reconcile.
func (ps *Partitions) takeOver(ctx context.Context, p int, hp *heldPartition) {
	name := payments.PartitionName(p)
	fail := func(err error) {
		ps.mu.Lock()
		if ps.parts[p] == hp {
			delete(ps.parts, p)
		}
		ps.mu.Unlock()
		if ctx.Err() == nil {
			ps.Logger.WarnContext(ctx, "partition takeover failed; will retry", "partition", name, "err", err)
		}
	}
	// Wait up to two TTLs: the old owner releases after its drain, or its
	// lease runs out on the coordinator if it is gone. The wait is a place
	// in the lock's line, not a poll: the coordinator grants it in the very
	// log entry that expires the old lease, so a dead owner's partition is
	// ours one tick after its lease's deadline (issue #14).
	lease, err := ps.Leases.Acquire(ctx, LockName(name), lock.Wait(2*ps.Leases.TTL()))
	if err != nil {
		fail(err)
		return
	}
	if err := ps.Claim(ctx, name, lease.FenceToken()); err != nil {
		_ = ps.Leases.Release(context.WithoutCancel(ctx), LockName(name))
		fail(err)
		return
	}
	ps.mu.Lock()
	hp.lease = lease
	hp.serving = ps.parts[p] == hp && lease.Valid()
	ps.mu.Unlock()
	ps.Logger.InfoContext(ctx, "partition taken over", "partition", name, "token", lease.Token())
}

// handOff lets partition p's work in flight finish (up to Drain), then
// releases its lease so the new owner gets it at once. Work still running
// after Drain is abandoned to the fence: the new owner's claim refuses its
// writes, and the recovery worker there finishes the payments it left.
func (ps *Partitions) handOff(ctx context.Context, p int, hp *heldPartition) {
	name := payments.PartitionName(p)
	ps.mu.Lock()
	var idle chan struct{}
	if hp.inflight > 0 {
		idle = make(chan struct{})
		hp.idle = idle
	}
	ps.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-time.After(ps.Drain):
			ps.Logger.WarnContext(ctx, "partition handoff: work still in flight after the drain; releasing anyway", "partition", name)
		case <-ctx.Done():
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := ps.Leases.Release(rctx, LockName(name)); err != nil && !errors.Is(err, lock.ErrLeaseLost) {
		ps.Logger.WarnContext(ctx, "partition release failed; it expires at its TTL", "partition", name, "err", err)
	}
	ps.mu.Lock()
	if ps.parts[p] == hp {
		delete(ps.parts, p)
	}
	ps.mu.Unlock()
	ps.Logger.InfoContext(ctx, "partition handed off", "partition", name)
}
