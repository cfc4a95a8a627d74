package lock

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Lease is a held lock. Its Token goes with every write made under it;
// Done and Context tell when to stop.
type Lease struct {
	c     *Client
	name  string
	id    string
	token uint64
	epoch uint64
	ttl   time.Duration

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	deadline time.Time // client-side: last confirmed send time + ttl - margin
	err      error
	stop     chan struct{}
	stopOnce sync.Once
	finished chan struct{} // closed when the keepalive loop has exited
}

func newLease(c *Client, name, id string, token uint64, ttl time.Duration, deadline time.Time) *Lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Lease{c: c, name: name, id: id, token: token, ttl: ttl, deadline: deadline, ctx: ctx, cancel: cancel,
		stop: make(chan struct{}), finished: make(chan struct{})}
}

// Token returns the lease's fencing token; pass it to Fence with every
// write made under the lock.
func (l *Lease) Token() uint64 { return l.token }

// Epoch returns the epoch of the coordinator cluster that granted the lease.
func (l *Lease) Epoch() uint64 { return l.epoch }

// FenceToken returns what writes under this lease present to FenceLease.
func (l *Lease) FenceToken() FenceToken {
	return FenceToken{Epoch: l.epoch, Token: l.token, LeaseID: l.id}
}

// ID returns the lease id.
func (l *Lease) ID() string { return l.id }

// Name returns the lock's name.
func (l *Lease) Name() string { return l.name }

// Done is closed the moment the lease may have been lost (or was released).
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Context returns a context cancelled when Done closes; do the work that
// needs the lock under it.
func (l *Lease) Context() context.Context { return l.ctx }

// Err returns nil while the lease is held, ErrLeaseLost once it may have
// been lost and ErrReleased after Release.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Deadline returns the client-side deadline: the lease is certainly held
// until then unless the holder is told otherwise.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Valid reports whether the lease is still certainly held.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err == nil && time.Now().Before(l.deadline)
}

func (l *Lease) lose(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	l.cancel(err)
}

// keepAlive sends one keepalive and, on success, moves the deadline to
// its send time + ttl - margin.
func (l *Lease) keepAlive(ctx context.Context) error { return l.refresh(ctx, false) }

// refresh is keepAlive; with revive it also accepts an answer that comes
// after the client-side deadline. Only Acquire asks for that, before the
// lease is handed out: once a holder has the lease, a passed deadline has
// told it to stop (Done closed), and reviving the lease behind its back
// would break that promise.
func (l *Lease) refresh(ctx context.Context, revive bool) error {
	ctx, span := l.c.tracer.Start(ctx, "lock.keepalive")
	defer span.End()
	sentAt := time.Now()
	err := l.c.call(ctx, http.MethodPost, l.path()+"/keepalive", nil, http.StatusOK, nil)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || (!revive && !time.Now().Before(l.deadline)) {
		// The answer came after the moment the lease may have been lost;
		// the holder may already have stopped, so do not revive it.
		return ErrLeaseLost
	}
	if d := sentAt.Add(l.ttl - l.c.margin(l.ttl)); d.After(l.deadline) {
		l.deadline = d
	}
	return nil
}

// path is the lease's resource on the coordinator.
func (l *Lease) path() string {
	return "/v1/locks/" + url.PathEscape(l.name) + "/leases/" + url.PathEscape(l.id)
}

// release ends the lease on the server.
func (l *Lease) release(ctx context.Context) error {
	return l.c.call(ctx, http.MethodDelete, l.path(), nil, http.StatusNoContent, nil)
}

// abandon gives up a lease that Acquire granted but will not hand out:
// it is marked lost and released on the server, so that the lock does not
// stay taken for a whole TTL by a lease nobody holds (waiters queued
// behind it would wait that long, and a retry of the same acquire would
// queue behind its own abandoned grant). The release is best effort; if
// it fails, the lease ends at its TTL as usual.
func (l *Lease) abandon(ctx context.Context, cause error) {
	l.lose(cause)
	close(l.finished) // no keepalive loop runs for it
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = l.release(ctx)
}

// run keeps the lease alive every ttl/3 and closes Done at the client-side
// deadline if no keepalive got through in time.
func (l *Lease) run() {
	defer close(l.finished)
	interval := l.ttl / 3
	next := time.NewTimer(interval)
	defer next.Stop()
	for {
		expiry := time.NewTimer(time.Until(l.Deadline()))
		select {
		case <-l.stop:
			expiry.Stop()
			return
		case <-expiry.C:
			l.lose(ErrLeaseLost)
			return
		case <-next.C:
			expiry.Stop()
			// Each attempt is bounded by the deadline: past it the lease is
			// lost whatever the server says later.
			ctx, cancel := context.WithDeadline(l.ctx, l.Deadline())
			err := l.keepAlive(ctx)
			cancel()
			switch {
			case err == nil:
				next.Reset(interval)
			case errors.Is(err, ErrLeaseLost):
				l.lose(err)
				return
			default:
				next.Reset(min(interval, 50*time.Millisecond)) // transient: try again soon
			}
		}
	}
}

// Release gives the lock up and stops the keepalive; Done closes. Releasing
// a lease that was already lost returns ErrLeaseLost.
func (l *Lease) Release(ctx context.Context) error {
	ctx, span := l.c.tracer.Start(ctx, "lock.release")
	defer span.End()
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.finished
	if err := l.Err(); err != nil {
		return err
	}
	err := l.release(ctx)
	if err != nil && !errors.Is(err, ErrLeaseLost) {
		// The lease may still be held: it ends at its TTL on the server.
		l.lose(ErrLeaseLost)
		return fmt.Errorf("release %s: %w", l.name, err)
	}
	l.lose(ErrReleased)
	if err != nil {
		return fmt.Errorf("release %s: %w", l.name, err)
	}
	return nil
}
