package raftnode

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/fsm"
)

// Service implements coordinator.Service on a Node: writes are Raft
// proposals, reads come from the local machine after a read barrier (or
// without one when the caller accepts stale data).
type Service struct {
	node         *Node
	cancelWaitMW func(apply func())
}

var _ coordinator.Service = (*Service)(nil)

// ServiceOption configures a Service.
type ServiceOption func(*Service)

// InterceptCancelWait wraps the proposal of every cancel-wait entry (the
// entry a wait that ran out or was abandoned writes): mw must call apply. It
// is a test seam: tests hold cancels back to replay, over real sockets, the
// order in which a late cancel lands after its client's retry.
func InterceptCancelWait(mw func(apply func())) ServiceOption {
	return func(s *Service) { s.cancelWaitMW = mw }
}

// NewService returns the coordinator service backed by n.
func NewService(n *Node, opts ...ServiceOption) *Service {
	s := &Service{node: n}
	for _, o := range opts {
		o(s)
	}
	return s
}

// callerOf is the identity the transport authenticated for this request,
// written into every command that creates or changes a lease or an entry
// (empty without TLS); the machine keeps it and checks it (fsm.checkHolder).
func callerOf(ctx context.Context) string {
	c, _ := coordinator.CallerFrom(ctx)
	return c.String()
}

func (s *Service) apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	res, err := s.node.Apply(ctx, cmd)
	if err != nil {
		return res, err
	}
	return res, res.Err
}

// Acquire grants the lock or, with a wait, queues for it and blocks until
// the log grants it, the wait runs out or ctx ends.
func (s *Service) Acquire(ctx context.Context, req coordinator.AcquireRequest) (coordinator.Lease, error) {
	if err := req.Validate(); err != nil {
		return coordinator.Lease{}, err
	}
	res, err := s.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Caller: callerOf(ctx), MaxLocks: req.MaxLocks, Lock: req.Lock, Owner: req.Owner, RequestID: req.RequestID, Attempt: req.Attempt, TTL: req.TTL, Wait: req.Wait})
	if err != nil {
		return coordinator.Lease{}, err
	}
	if res.Lease != nil {
		return *res.Lease, nil
	}
	return s.wait(ctx, req)
}

// wait follows a queued acquire on the local machine. The grant itself is a
// log entry (a release or an expiry tick), so whatever this node sees is
// committed. If the caller gives up first, a cancel entry takes the request
// out of line, or gives the lock back if it was granted meanwhile, so no
// lease is left that nobody knows about. The cancel names this attempt: if
// the client has retried meanwhile, the log ignores it (see fsm.cancelWait).
func (s *Service) wait(ctx context.Context, req coordinator.AcquireRequest) (coordinator.Lease, error) {
	ctx, span := s.node.tracer.Start(ctx, "lock.wait", trace.WithAttributes(attribute.String("lock", req.Lock)))
	defer span.End()
	timer := time.NewTimer(req.Wait)
	defer timer.Stop()
	m := s.node.Machine()
	for {
		changed := m.Changed()
		o := m.Outcome(req.RequestID)
		if o.Lease != nil {
			span.SetAttributes(attribute.Int64("lock.token", int64(o.Lease.Token)))
			return *o.Lease, nil
		}
		if !o.Queued {
			return coordinator.Lease{}, o.Err
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		break
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var err error
	apply := func() {
		_, err = s.node.Apply(cctx, fsm.Command{Op: fsm.OpCancelWait, Caller: callerOf(ctx), Lock: req.Lock, RequestID: req.RequestID, Attempt: req.Attempt})
	}
	if s.cancelWaitMW != nil {
		s.cancelWaitMW(apply)
	} else {
		apply()
	}
	if err != nil {
		// The waiter stays queued until its wait runs out in the log; a
		// retry with the same request id picks up whatever it got.
		return coordinator.Lease{}, err
	}
	if ctx.Err() != nil {
		return coordinator.Lease{}, ctx.Err()
	}
	return coordinator.Lease{}, coordinator.ErrLockHeld
}

// KeepAlive restarts the lease's TTL.
func (s *Service) KeepAlive(ctx context.Context, lock, leaseID string) (coordinator.Lease, error) {
	res, err := s.apply(ctx, fsm.Command{Op: fsm.OpKeepAlive, Caller: callerOf(ctx), Lock: lock, LeaseID: leaseID})
	if err != nil {
		return coordinator.Lease{}, err
	}
	return *res.Lease, nil
}

// KeepAliveBatch renews every lease of refs in one log entry. A malformed
// batch is refused before it is proposed, so it costs no write.
func (s *Service) KeepAliveBatch(ctx context.Context, refs []coordinator.LeaseRef) ([]coordinator.Renewal, error) {
	batch := make([]fsm.LeaseRef, len(refs))
	for i, r := range refs {
		batch[i] = fsm.LeaseRef{Lock: r.Lock, LeaseID: r.LeaseID}
	}
	if err := fsm.ValidateBatch(batch); err != nil {
		return nil, err
	}
	res, err := s.apply(ctx, fsm.Command{Op: fsm.OpKeepAliveBatch, Caller: callerOf(ctx), Leases: batch})
	if err != nil {
		return nil, err
	}
	out := make([]coordinator.Renewal, len(res.Batch))
	for i, it := range res.Batch {
		out[i] = coordinator.Renewal{Lease: it.Lease, Err: it.Err}
	}
	return out, nil
}

// Release gives the lock up.
func (s *Service) Release(ctx context.Context, lock, leaseID string) error {
	_, err := s.apply(ctx, fsm.Command{Op: fsm.OpRelease, Caller: callerOf(ctx), Lock: lock, LeaseID: leaseID})
	return err
}

func (s *Service) read(ctx context.Context, opts coordinator.ReadOptions) error {
	if opts.Stale {
		return nil
	}
	return s.node.ReadBarrier(ctx)
}

// Lock reports a lock's state, linearizably unless opts.Stale.
func (s *Service) Lock(ctx context.Context, name string, opts coordinator.ReadOptions) (coordinator.Lock, error) {
	if err := s.read(ctx, opts); err != nil {
		return coordinator.Lock{}, err
	}
	return s.node.Machine().Lock(name)
}

// Register adds or refreshes an instance.
func (s *Service) Register(ctx context.Context, m coordinator.Member) (coordinator.Member, error) {
	if err := m.Validate(); err != nil {
		return coordinator.Member{}, err
	}
	if _, err := s.apply(ctx, fsm.Command{Op: fsm.OpRegister, Caller: callerOf(ctx), Service: m.Service, Instance: m.Instance, Addr: m.Addr, TTL: m.TTL}); err != nil {
		return coordinator.Member{}, err
	}
	return m, nil
}

// Heartbeat restarts a registration's TTL.
func (s *Service) Heartbeat(ctx context.Context, service, instance string) error {
	_, err := s.apply(ctx, fsm.Command{Op: fsm.OpHeartbeat, Caller: callerOf(ctx), Service: service, Instance: instance})
	return err
}

// Deregister removes an instance.
func (s *Service) Deregister(ctx context.Context, service, instance string) error {
	_, err := s.apply(ctx, fsm.Command{Op: fsm.OpDeregister, Caller: callerOf(ctx), Service: service, Instance: instance})
	return err
}

// Members lists a service's instances; with waitVersion > 0 it is a long
// poll that returns as soon as the version differs, or the unchanged list
// when ctx ends.
func (s *Service) Members(ctx context.Context, service string, waitVersion uint64, opts coordinator.ReadOptions) (coordinator.Members, error) {
	if err := s.read(ctx, opts); err != nil {
		return coordinator.Members{}, err
	}
	m := s.node.Machine()
	for {
		changed := m.Changed()
		ms := m.Members(service)
		if waitVersion == 0 || ms.Version != waitVersion {
			return ms, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return ms, nil
			}
			return ms, ctx.Err()
		}
	}
}
