package lock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var (
	// ErrLockHeld means another holder has the lock (and the wait, if any,
	// ran out).
	ErrLockHeld = errors.New("lock: held by another holder")
	// ErrLeaseLost means the lease ended, or may have ended, before it was
	// released: a keepalive was refused or could not be confirmed in time.
	ErrLeaseLost = errors.New("lock: lease lost")
	// ErrReleased is a released lease's Err.
	ErrReleased = errors.New("lock: lease released")
	// ErrUnavailable means no coordinator node could serve the request
	// before the context ended.
	ErrUnavailable = errors.New("lock: coordinator unavailable")
)

// Client talks to a coordinator cluster. It is safe for concurrent use.
type Client struct {
	endpoints  []string
	http       *http.Client
	attempt    time.Duration
	owner      string
	margin     func(ttl time.Duration) time.Duration
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator

	mu      sync.Mutex
	current int // index of the endpoint that answered last
	hint    string

	requests atomic.Uint64 // HTTP requests sent, every attempt counted
}

// Requests returns how many HTTP requests the client has sent to the
// coordinator so far, retries included. It is how a test proves that a
// code path costs no coordinator round trip.
func (c *Client) Requests() uint64 { return c.requests.Load() }

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (transport, TLS). Leave its Timeout
// zero: a Timeout shorter than an acquire's wait plus WaitMargin cuts a
// queued acquire off before the coordinator's answer, which is the failure
// the per-attempt timeout exists to avoid (see WithAttemptTimeout).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// DefaultAttemptTimeout bounds one HTTP attempt of a call that does not
// wait in line (keepalive, release, an acquire without Wait).
const DefaultAttemptTimeout = 10 * time.Second

// WaitMargin is how much longer than its wait the client gives one attempt
// of a queued acquire. The coordinator answers a wait that ran out with a
// clean 409 once it has withdrawn the request through the log (up to 2 s
// for that proposal, plus a forwarding hop); giving up sooner would leave
// the outcome unknown and force a retry.
const WaitMargin = 5 * time.Second

// WithAttemptTimeout sets DefaultAttemptTimeout for this client. An
// acquire with Wait(w) always gets at least w + WaitMargin per attempt.
func WithAttemptTimeout(d time.Duration) Option { return func(c *Client) { c.attempt = d } }

// WithOwner labels this client's leases, for operators reading lock state.
func WithOwner(owner string) Option { return func(c *Client) { c.owner = owner } }

// WithSafetyMargin sets how much earlier than the server the client gives a
// lease up, to absorb clock rate differences and scheduling delays. The
// default is a tenth of the TTL, at least 20ms.
func WithSafetyMargin(d time.Duration) Option {
	return func(c *Client) { c.margin = func(time.Duration) time.Duration { return d } }
}

// WithTracerProvider sets where the client's spans go (default: the global).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *Client) { c.tracer = tp.Tracer("github.com/payonce/payonce/pkg/lock") }
}

// NewClient returns a client for the coordinator nodes at endpoints (HTTP
// base URLs); any node will do, the client follows the leader.
func NewClient(endpoints []string, opts ...Option) *Client {
	// net/http keeps only 2 idle connections per host by default: with more
	// concurrent callers every extra request dials a new TCP connection and
	// closes it afterwards, which cost more CPU than the lock itself at 64
	// callers. Callers of one coordinator talk to one leader, so keep many.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	c := &Client{
		endpoints: append([]string(nil), endpoints...),
		// No client-wide Timeout: each attempt has its own (see call).
		http:    &http.Client{Transport: tr},
		attempt: DefaultAttemptTimeout,
		margin: func(ttl time.Duration) time.Duration {
			return max(ttl/10, 20*time.Millisecond)
		},
		tracer:     otel.Tracer("github.com/payonce/payonce/pkg/lock"),
		propagator: otel.GetTextMapPropagator(),
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// AcquireOption tunes one Acquire.
type AcquireOption func(*acquireOptions)

type acquireOptions struct{ wait time.Duration }

// Wait queues for the lock for up to d if it is held, instead of failing
// at once. Waiters are served in arrival order.
func Wait(d time.Duration) AcquireOption { return func(o *acquireOptions) { o.wait = d } }

type leaseBody struct {
	LeaseID string `json:"lease_id"`
	Lock    string `json:"lock"`
	Token   uint64 `json:"token"`
	Epoch   uint64 `json:"epoch"`
}

// Acquire takes the lock name for ttl and keeps it alive in the background
// until Release or until it is lost (see Lease.Done). Retries after
// timeouts and leader changes reuse one request id, so they cannot take the
// lock twice and keep the place in line the first try took; each try also
// carries its attempt number, so that the coordinator lets only the newest
// try withdraw the request (an abandoned try's late cancel cannot end the
// lease a retry was given). One try lasts up to the wait plus WaitMargin,
// longer than the coordinator's own wait, so a wait that runs out ends in a
// clean ErrLockHeld rather than a timeout. It never returns a lease whose
// time may already be up.
func (c *Client) Acquire(ctx context.Context, name string, ttl time.Duration, opts ...AcquireOption) (*Lease, error) {
	l, err := c.grant(ctx, name, ttl, opts)
	if err != nil {
		return nil, err
	}
	go l.run()
	return l, nil
}

// grant is Acquire without the lease's own keepalive loop: Acquire starts
// one, a PartitionLeases group renews its leases together instead.
func (c *Client) grant(ctx context.Context, name string, ttl time.Duration, opts []AcquireOption) (*Lease, error) {
	var o acquireOptions
	for _, opt := range opts {
		opt(&o)
	}
	ctx, span := c.tracer.Start(ctx, "lock.acquire", trace.WithAttributes(attribute.String("lock", name), attribute.Int64("lock.ttl_ms", ttl.Milliseconds())))
	defer span.End()
	rid := uuid.NewString()
	body := func(attempt int) []byte {
		b, _ := json.Marshal(map[string]any{"request_id": rid, "attempt": attempt, "owner": c.owner, "ttl_ms": ttl.Milliseconds(), "wait_ms": o.wait.Milliseconds()})
		return b
	}
	perAttempt := c.attempt
	if o.wait > 0 {
		perAttempt = max(perAttempt, o.wait+WaitMargin)
	}
	// The server's deadline is at least the commit time of the grant plus
	// ttl, and the commit comes after this moment: counting from here is
	// safe whatever retries follow.
	sentAt := time.Now()
	var lb leaseBody
	if err := c.attempts(ctx, http.MethodPost, "/v1/locks/"+url.PathEscape(name)+"/leases", body, perAttempt, http.StatusCreated, &lb); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return nil, fmt.Errorf("acquire %s: %w", name, err)
	}
	span.SetAttributes(attribute.Int64("lock.token", int64(lb.Token)))
	l := newLease(c, name, lb.LeaseID, lb.Token, ttl, sentAt.Add(ttl-c.margin(ttl)))
	l.epoch = lb.Epoch
	if time.Since(sentAt) >= ttl/3 {
		// The grant came late (it queued, or the call was retried): the
		// deadline counted from sentAt is still safe, since the server's is
		// later, but it may come before the first background keepalive at
		// ttl/3, or be past already when the wait was longer than the TTL.
		// One keepalive now restores the full TTL from a known send time;
		// it may revive a deadline that passed, because nobody has held
		// the lease yet, and the server refuses it if the lease really
		// ended. A prompt grant needs none: that would be a third log
		// write per acquire+release for nothing.
		if err := l.refresh(ctx, true); err != nil {
			l.abandon(ctx, err)
			return nil, fmt.Errorf("acquire %s: granted late and not confirmed: %w", name, err)
		}
	}
	if !l.Valid() {
		l.abandon(ctx, ErrLeaseLost)
		return nil, fmt.Errorf("acquire %s: granted too late to be safe: %w", name, ErrLeaseLost)
	}
	return l, nil
}

// problem is the part of an RFC 9457 document the client reads.
type problem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
	Status int    `json:"status"`
}

// errStatus is a definite answer from the coordinator that is not success.
type errStatus struct {
	status int
	p      problem
}

func (e *errStatus) Error() string {
	return fmt.Sprintf("coordinator: %d %s: %s", e.status, e.p.Type, e.p.Detail)
}

func (e *errStatus) is(problemType string) bool { return strings.HasSuffix(e.p.Type, problemType) }

// maxBackoff caps the wait between two attempts of one call.
const maxBackoff = 50 * time.Millisecond

// call sends one request, moving to another node on network errors and
// 503s (following a named leader), until a definite answer or ctx ends.
func (c *Client) call(ctx context.Context, method, path string, body []byte, want int, out any) error {
	return c.attempts(ctx, method, path, func(int) []byte { return body }, c.attempt, want, out)
}

// attempts is call with a body per attempt (numbered from 1) and a timeout
// per attempt; an attempt that times out is retried like a network error.
func (c *Client) attempts(ctx context.Context, method, path string, body func(attempt int) []byte, perAttempt time.Duration, want int, out any) error {
	backoff := 10 * time.Millisecond
	var lastErr error
	for attempt := 1; attempt <= 1000; attempt++ {
		base := c.endpoint()
		actx, cancel := context.WithTimeout(ctx, perAttempt)
		err := c.once(actx, method, base+path, body(attempt), want, out)
		cancel()
		var es *errStatus
		switch {
		case err == nil:
			return nil
		case errors.As(err, &es) && es.status != http.StatusServiceUnavailable && es.status != http.StatusBadGateway:
			switch {
			case es.is("lock-held"):
				return fmt.Errorf("%w: %s", ErrLockHeld, es.p.Detail)
			case es.is("lease-not-held"), es.is("lock-not-found"), es.is("lease-expired"):
				return fmt.Errorf("%w: %s", ErrLeaseLost, es.p.Detail)
			}
			return err
		}
		lastErr = err
		c.next(base)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last error: %v)", ErrUnavailable, ctx.Err(), lastErr)
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		// A short cap: during an election the answers are cheap 503s
		// and a grant should follow the new leader by a few tens of
		// milliseconds, not by a long back-off (etcd's client retries
		// every 25 ms). The jitter keeps many clients out of step.
		backoff = min(backoff*2, maxBackoff)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
}

func (c *Client) once(ctx context.Context, method, u string, body []byte, want int, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.propagator.Inject(ctx, propagation.HeaderCarrier(req.Header))
	c.requests.Add(1)
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if leader := resp.Header.Get("Coordinator-Leader"); leader != "" {
		// A follower forwarded the call or could not: go to the leader
		// directly next time.
		c.mu.Lock()
		c.hint = leader
		c.mu.Unlock()
	}
	if resp.StatusCode == want {
		if out != nil {
			return json.Unmarshal(b, out)
		}
		return nil
	}
	es := &errStatus{status: resp.StatusCode}
	_ = json.Unmarshal(b, &es.p)
	return es
}

func (c *Client) endpoint() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hint != "" {
		return c.hint
	}
	return c.endpoints[c.current%len(c.endpoints)]
}

// next moves on from a node that failed.
func (c *Client) next(failed string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hint == failed {
		c.hint = ""
		return
	}
	c.hint = ""
	if c.endpoints[c.current%len(c.endpoints)] == failed {
		c.current++
	}
}
