package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// MaxBatch is the most leases one renewal request carries (the
// coordinator's limit); a group holding more sends one request per
// MaxBatch leases.
const MaxBatch = 1024

// PartitionLeases is a group of leases one holder keeps alive together: the
// leases of the partitions a service instance owns. Each lease is acquired
// on its own (it has its own fencing token), but all are renewed in one
// request, which the coordinator applies as one Raft entry, every TTL/3,
// whatever their number. A holder of 64 partitions pays one coordinator
// write per renewal interval instead of 64, and none per unit of work: the
// check that a partition's lease is still held (Lease.Valid) is local.
//
// A lease of the group behaves like one from Client.Acquire: Done closes
// the moment it may have been lost (its renewal was refused, or no renewal
// was confirmed before its client-side deadline), Release gives it up. Run
// must be running for the group's leases to be renewed.
type PartitionLeases struct {
	c   *Client
	ttl time.Duration

	mu     sync.Mutex
	leases map[string]*Lease
	wake   chan struct{} // a lease joined: recompute the next deadline

	renewals atomic.Uint64
}

// PartitionLeases returns an empty group whose leases live for ttl after
// each renewal. Acquire leases into it and Run it.
func (c *Client) PartitionLeases(ttl time.Duration) (*PartitionLeases, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("partition leases: ttl %v must be positive", ttl)
	}
	if c.margin(ttl) >= ttl/3 {
		// Renewals go out every ttl/3; a margin that large would let the
		// client-side deadline pass before the first renewal is due.
		return nil, fmt.Errorf("partition leases: safety margin %v must be below a third of ttl %v", c.margin(ttl), ttl)
	}
	return &PartitionLeases{c: c, ttl: ttl, leases: map[string]*Lease{}, wake: make(chan struct{}, 1)}, nil
}

// TTL returns the leases' time to live.
func (g *PartitionLeases) TTL() time.Duration { return g.ttl }

// Renewals returns how many renewal requests the group has sent.
func (g *PartitionLeases) Renewals() uint64 { return g.renewals.Load() }

// Acquire takes the lock name into the group (see Client.Acquire for the
// options and the guarantees; Wait is how a new owner waits for the old
// owner to release). It refuses a name the group already holds a live
// lease on: one holder, one lease per partition.
func (g *PartitionLeases) Acquire(ctx context.Context, name string, opts ...AcquireOption) (*Lease, error) {
	if name == "" {
		return nil, errors.New("partition leases: empty lock name")
	}
	g.mu.Lock()
	if l := g.leases[name]; l != nil && l.Err() == nil {
		g.mu.Unlock()
		return nil, fmt.Errorf("partition leases: %s is already held by this group (lease %s)", name, l.ID())
	}
	g.mu.Unlock()
	l, err := g.c.grant(ctx, name, g.ttl, opts)
	if err != nil {
		return nil, err
	}
	close(l.finished) // no loop of its own: the group renews it
	g.mu.Lock()
	if old := g.leases[name]; old != nil && old.Err() == nil {
		// A concurrent Acquire of the same name won; give this one back.
		g.mu.Unlock()
		_ = l.Release(ctx)
		return nil, fmt.Errorf("partition leases: %s acquired twice concurrently", name)
	}
	g.leases[name] = l
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
	return l, nil
}

// Lease returns the group's lease on name if it is still certainly held;
// it is a local check, no request.
func (g *PartitionLeases) Lease(name string) (*Lease, bool) {
	g.mu.Lock()
	l := g.leases[name]
	g.mu.Unlock()
	if l == nil || !l.Valid() {
		return nil, false
	}
	return l, true
}

// Held returns the names of the leases the group still holds, sorted.
func (g *PartitionLeases) Held() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.leases))
	for name, l := range g.leases {
		if l.Err() == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Release gives up the group's lease on name (Done closes); the next
// acquirer gets a higher token. Releasing a name the group does not hold is
// not an error.
func (g *PartitionLeases) Release(ctx context.Context, name string) error {
	g.mu.Lock()
	l := g.leases[name]
	delete(g.leases, name)
	g.mu.Unlock()
	if l == nil {
		return nil
	}
	return l.Release(ctx)
}

// Close releases every lease of the group.
func (g *PartitionLeases) Close(ctx context.Context) error {
	var errs []error
	for _, name := range g.Held() {
		if err := g.Release(ctx, name); err != nil && !errors.Is(err, ErrLeaseLost) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// live returns the group's leases not yet lost, dropping lost ones, and the
// earliest client-side deadline among them.
func (g *PartitionLeases) live() ([]*Lease, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Lease, 0, len(g.leases))
	var first time.Time
	for name, l := range g.leases {
		if l.Err() != nil {
			delete(g.leases, name)
			continue
		}
		out = append(out, l)
		if d := l.Deadline(); first.IsZero() || d.Before(first) {
			first = d
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, first
}

// Run renews the group's leases every TTL/3 until ctx ends, and marks a
// lease lost (closing its Done) when its renewal is refused or its
// client-side deadline passes unconfirmed. It does not release the leases
// when ctx ends: call Close for that (or let them run out).
func (g *PartitionLeases) Run(ctx context.Context) error {
	interval := g.ttl / 3
	next := time.Now().Add(interval)
	for {
		leases, first := g.live()
		wakeAt := next
		if len(leases) > 0 && first.Before(wakeAt) {
			wakeAt = first
		}
		timer := time.NewTimer(time.Until(wakeAt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-g.wake:
			timer.Stop()
			continue
		case <-timer.C:
		}
		now := time.Now()
		for _, l := range leases {
			if !now.Before(l.Deadline()) {
				l.lose(ErrLeaseLost)
			}
		}
		if now.Before(next) {
			continue // woke for a deadline, not for a renewal
		}
		leases, first = g.live()
		if len(leases) == 0 {
			next = now.Add(interval)
			continue
		}
		// Every attempt is bounded by the earliest deadline: past it that
		// lease is lost whatever the answer says.
		rctx, cancel := context.WithDeadline(ctx, first)
		err := g.renew(rctx, leases)
		cancel()
		if err != nil {
			next = time.Now().Add(min(interval, 50*time.Millisecond)) // transient: try again soon
			continue
		}
		next = time.Now().Add(interval)
	}
}

// batchRef and batchAnswer mirror the coordinator's keepalive batch route.
type batchRef struct {
	Lock    string `json:"lock"`
	LeaseID string `json:"lease_id"`
}

type batchAnswer struct {
	Leases []struct {
		Lock  string     `json:"lock"`
		Lease *leaseBody `json:"lease"`
		Error *struct {
			Type   string `json:"type"`
			Detail string `json:"detail"`
		} `json:"error"`
	} `json:"leases"`
}

// renew sends one renewal request per MaxBatch leases and applies the
// answers: a renewed lease's deadline moves to the request's send time +
// TTL - margin; a refused one is lost. An error means no answer came
// (the leases stay as they were, and lapse at their deadlines if no later
// renewal gets through).
func (g *PartitionLeases) renew(ctx context.Context, leases []*Lease) error {
	ctx, span := g.c.tracer.Start(ctx, "lock.keepalive_batch")
	defer span.End()
	span.SetAttributes(attribute.Int("lock.leases", len(leases)))
	for start := 0; start < len(leases); start += MaxBatch {
		chunk := leases[start:min(start+MaxBatch, len(leases))]
		refs := make([]batchRef, len(chunk))
		for i, l := range chunk {
			refs[i] = batchRef{Lock: l.name, LeaseID: l.id}
		}
		body, _ := json.Marshal(map[string]any{"leases": refs})
		sentAt := time.Now()
		g.renewals.Add(1)
		var ans batchAnswer
		if err := g.c.call(ctx, http.MethodPost, "/v1/leases/keepalive", body, http.StatusOK, &ans); err != nil {
			return fmt.Errorf("renew %d leases: %w", len(chunk), err)
		}
		if len(ans.Leases) != len(chunk) {
			return fmt.Errorf("renew %d leases: coordinator answered %d", len(chunk), len(ans.Leases))
		}
		for i, l := range chunk {
			a := ans.Leases[i]
			switch {
			case a.Lock != l.name:
				return fmt.Errorf("renew: answer %d is for %q, not %q", i, a.Lock, l.name)
			case a.Error != nil || a.Lease == nil || a.Lease.LeaseID != l.id:
				l.lose(ErrLeaseLost)
			default:
				l.extend(sentAt)
			}
		}
	}
	return nil
}

// extend moves the client-side deadline to sentAt + ttl - margin after a
// confirmed renewal sent at sentAt, unless the lease is already lost or
// its deadline passed before the answer came (its holder may have stopped
// already; a lease is never revived behind its back).
func (l *Lease) extend(sentAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil || !time.Now().Before(l.deadline) {
		return
	}
	if d := sentAt.Add(l.ttl - l.c.margin(l.ttl)); d.After(l.deadline) {
		l.deadline = d
	}
}
