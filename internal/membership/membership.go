// Package membership keeps a service instance registered in the
// coordinator's membership and keeps a consistent-hash ring of its
// service's live instances, from which it answers "which instance owns
// this customer".
//
// Every instance of a service watches the same versioned member list (a long
// poll on the coordinator, which replicates it through Raft). Beside the list
// the coordinator serves the service's ring table, which its state machine
// advances with ring.Rebalance at every change of the set, so a change moves
// only the changed instance's customers (ADR 0003). Instances decode and
// install that table; they never rebalance on their own, because a long poll
// may skip versions and an instance that starts later has no history. So
// instances that have seen the same version agree on every owner, without
// talking to each other. While they briefly disagree (one saw a change a moment earlier),
// two instances may both think they own a customer: the fencing-token locks
// make that overlap harmless, which is why ownership here is an
// optimisation for locality, never a correctness mechanism.
package membership

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce/pkg/ring"
)

// Member is one registered instance.
type Member struct {
	Instance string `json:"instance"`
	// Addr is the instance's HTTP base URL, e.g. http://10.0.0.5:8080.
	Addr string `json:"addr"`
}

// Client calls the coordinator's membership API on any of its nodes (a
// follower forwards writes to the leader).
type Client struct {
	endpoints []string
	http      *http.Client
	next      atomic.Uint32
}

// NewClient returns a client of the coordinator nodes at endpoints.
func NewClient(endpoints []string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 40 * time.Second}
	}
	return &Client{endpoints: endpoints, http: httpClient}
}

// call tries each endpoint in turn, starting with the last that worked.
func (c *Client) call(ctx context.Context, method, path string, body any, out any) (int, error) {
	var payload []byte
	if body != nil {
		payload, _ = json.Marshal(body)
	}
	var lastErr error
	start := int(c.next.Load())
	for i := range c.endpoints {
		idx := (start + i) % len(c.endpoints)
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.endpoints[idx], "/")+path, bytes.NewReader(payload))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.http.Do(req)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			lastErr = fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
			continue
		}
		c.next.Store(uint32(idx))
		if out != nil && resp.StatusCode/100 == 2 && len(data) > 0 {
			if err := json.Unmarshal(data, out); err != nil {
				return resp.StatusCode, fmt.Errorf("decode %s: %w", path, err)
			}
		}
		return resp.StatusCode, nil
	}
	return 0, fmt.Errorf("no coordinator node answered: %w", lastErr)
}

func memberPath(service, instance string) string {
	return "/v1/services/" + url.PathEscape(service) + "/members/" + url.PathEscape(instance)
}

// Register (re)registers instance at addr with a TTL.
func (c *Client) Register(ctx context.Context, service string, self Member, ttl time.Duration) error {
	status, err := c.call(ctx, http.MethodPut, memberPath(service, self.Instance), map[string]any{"addr": self.Addr, "ttl_ms": ttl.Milliseconds()}, nil)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("register %s/%s: status %d", service, self.Instance, status)
	}
	return nil
}

// Heartbeat renews the registration; registered is false when the
// coordinator no longer knows the instance (its TTL ran out).
func (c *Client) Heartbeat(ctx context.Context, service, instance string) (registered bool, err error) {
	status, err := c.call(ctx, http.MethodPost, memberPath(service, instance)+"/heartbeat", nil, nil)
	if err != nil {
		return false, err
	}
	if status == http.StatusNotFound {
		return false, nil
	}
	if status/100 != 2 {
		return false, fmt.Errorf("heartbeat %s/%s: status %d", service, instance, status)
	}
	return true, nil
}

// Deregister removes the instance at once (a clean shutdown), so its
// customers move without waiting for the TTL.
func (c *Client) Deregister(ctx context.Context, service, instance string) error {
	_, err := c.call(ctx, http.MethodDelete, memberPath(service, instance), nil, nil)
	return err
}

// View is a versioned member list and the coordinator's ring over it.
type View struct {
	Version uint64   `json:"version"`
	Members []Member `json:"members"`
	// Ring is the encoded ring.Snapshot (base64 in JSON), empty from a
	// coordinator that does not keep rings.
	Ring []byte `json:"ring,omitempty"`
	// RingFingerprint is the ring's Fingerprint in 16 hex digits.
	RingFingerprint string `json:"ring_fingerprint,omitempty"`
}

// Members returns the service's members; with waitVersion > 0 it blocks
// (up to wait) until the version differs from waitVersion.
func (c *Client) Members(ctx context.Context, service string, waitVersion uint64, wait time.Duration) (View, error) {
	path := "/v1/services/" + url.PathEscape(service) + "/members"
	if waitVersion > 0 {
		path += fmt.Sprintf("?wait_version=%d&timeout_ms=%d", waitVersion, wait.Milliseconds())
	}
	var v View
	status, err := c.call(ctx, http.MethodGet, path, nil, &v)
	if err == nil && status/100 != 2 {
		err = fmt.Errorf("members of %s: status %d", service, status)
	}
	return v, err
}

// Membership keeps one instance registered and its service's ring current.
type Membership struct {
	client  *Client
	service string
	self    Member
	ttl     time.Duration
	logger  *slog.Logger

	ring    ring.Ring
	addrs   atomic.Pointer[map[string]string]
	version atomic.Uint64
	ready   chan struct{}
	once    sync.Once
	// changed is closed, and replaced, each time a ring is installed.
	changed atomic.Pointer[chan struct{}]
}

// New returns the membership of self in service. Registrations live ttl
// after their last heartbeat; heartbeats go every ttl/3.
func New(client *Client, service string, self Member, ttl time.Duration, logger *slog.Logger) *Membership {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Membership{client: client, service: service, self: self, ttl: ttl, logger: logger, ready: make(chan struct{})}
	empty := map[string]string{}
	m.addrs.Store(&empty)
	changed := make(chan struct{})
	m.changed.Store(&changed)
	return m
}

// Self returns this instance.
func (m *Membership) Self() Member { return m.self }

// Ready is closed once the ring includes this instance.
func (m *Membership) Ready() <-chan struct{} { return m.ready }

// Changed returns a channel that is closed the next time a ring is
// installed. A worker that acts on ownership (a partition takeover) waits
// on it instead of polling the ring: a dead instance's customers are taken
// over the moment the coordinator drops it, not at the next poll. Take the
// channel before reading the ring, so a change in between is not missed.
func (m *Membership) Changed() <-chan struct{} { return *m.changed.Load() }

// Version returns the member-list version the ring was built from.
func (m *Membership) Version() uint64 { return m.version.Load() }

// Owner returns the instance that owns key and its address; ok is false
// while the ring is empty.
func (m *Membership) Owner(key string) (Member, bool) {
	name, ok := m.ring.Owner(key)
	if !ok {
		return Member{}, false
	}
	return Member{Instance: name, Addr: (*m.addrs.Load())[name]}, true
}

// Owns reports whether this instance owns key. With an empty ring (no
// coordinator reachable yet) every instance serves: availability first, the
// fence keeps it safe.
func (m *Membership) Owns(key string) bool {
	owner, ok := m.Owner(key)
	return !ok || owner.Instance == m.self.Instance
}

// Fingerprint returns the Fingerprint of the installed ring; instances
// that agree on every owner have equal fingerprints.
func (m *Membership) Fingerprint() uint64 { return m.ring.Load().Fingerprint() }

// Members returns the members of the current ring, sorted by instance.
func (m *Membership) Members() []Member {
	addrs := *m.addrs.Load()
	out := make([]Member, 0, len(addrs))
	for name, addr := range addrs {
		out = append(out, Member{Instance: name, Addr: addr})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Instance < out[j].Instance })
	return out
}

// Run registers, heartbeats and watches until ctx ends, then deregisters.
func (m *Membership) Run(ctx context.Context) error {
	errc := make(chan struct{})
	go func() { defer close(errc); m.watch(ctx) }()
	m.keepRegistered(ctx)
	<-errc
	deregCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := m.client.Deregister(deregCtx, m.service, m.self.Instance); err != nil {
		m.logger.WarnContext(ctx, "deregister failed; the registration will expire", "err", err)
	}
	return nil
}

func (m *Membership) keepRegistered(ctx context.Context) {
	registered := false
	tick := time.NewTicker(m.ttl / 3)
	defer tick.Stop()
	for {
		if !registered {
			if err := m.client.Register(ctx, m.service, m.self, m.ttl); err != nil {
				m.logger.WarnContext(ctx, "register in membership failed; retrying", "err", err)
			} else {
				registered = true
			}
		} else {
			ok, err := m.client.Heartbeat(ctx, m.service, m.self.Instance)
			if err != nil {
				m.logger.WarnContext(ctx, "membership heartbeat failed", "err", err)
			}
			registered = ok || err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (m *Membership) watch(ctx context.Context) {
	var version uint64
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		v, err := m.client.Members(ctx, m.service, version, 25*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.logger.WarnContext(ctx, "membership watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if v.Version != version || version == 0 {
			if err := m.install(ctx, v); err != nil {
				// Keep the ring we have and ask again for the same version:
				// routing on a table we cannot trust is worse than routing
				// on a slightly old one (the fence keeps either safe).
				m.logger.ErrorContext(ctx, "membership ring refused; retrying", "version", v.Version, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 2*time.Second)
				continue
			}
		}
		backoff = 100 * time.Millisecond
		version = v.Version
		if version == 0 {
			// An empty service has version 0, which would not block: wait a
			// little before asking again.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// install makes v's ring the current one. It takes the coordinator's table
// (checking it against its fingerprint and the member list) and builds one
// only if the coordinator sent none.
func (m *Membership) install(ctx context.Context, v View) error {
	members := make([]ring.Member, 0, len(v.Members))
	addrs := make(map[string]string, len(v.Members))
	self := false
	for _, mem := range v.Members {
		members = append(members, ring.Member{Name: mem.Instance})
		addrs[mem.Instance] = mem.Addr
		self = self || mem.Instance == m.self.Instance
	}
	snap, err := tableOf(v, members)
	if err != nil {
		return err
	}
	m.ring.Store(snap)
	m.addrs.Store(&addrs)
	m.version.Store(v.Version)
	m.logger.InfoContext(ctx, "ring updated", "service", m.service, "version", v.Version, "members", len(members),
		"ring_version", snap.Version(), "ring_fingerprint", fmt.Sprintf("%016x", snap.Fingerprint()))
	if self {
		m.once.Do(func() { close(m.ready) })
	}
	// Last, so whoever wakes sees the new ring and readiness.
	next := make(chan struct{})
	close(*m.changed.Swap(&next))
	return nil
}

// tableOf returns the ring of v: the coordinator's table when it sent one,
// else ring.Build of the members (a coordinator that keeps no rings; every
// instance then builds the same table, at the price of remapping ~all keys
// per change).
func tableOf(v View, members []ring.Member) (*ring.Snapshot, error) {
	if len(v.Ring) == 0 {
		return ring.Build(members)
	}
	snap, err := ring.Decode(v.Ring)
	if err != nil {
		return nil, fmt.Errorf("version %d: %w", v.Version, err)
	}
	if got := fmt.Sprintf("%016x", snap.Fingerprint()); got != v.RingFingerprint {
		return nil, fmt.Errorf("version %d: ring fingerprint %s, coordinator says %q", v.Version, got, v.RingFingerprint)
	}
	names := snap.Members()
	if len(names) != len(members) {
		return nil, fmt.Errorf("version %d: ring has %d members, the list %d", v.Version, len(names), len(members))
	}
	for i := range names {
		// Both are in name order: the coordinator lists members sorted and
		// a snapshot keeps them sorted.
		if names[i].Name != members[i].Name {
			return nil, fmt.Errorf("version %d: ring member %q, the list has %q", v.Version, names[i].Name, members[i].Name)
		}
	}
	return snap, nil
}
