package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/coordinator"
)

// RequestRetention is how long, in log time, the outcome of an acquire whose
// lease has expired is remembered, so that a late retry of that acquire is
// told "your lease ended" instead of silently taking the lock again.
const RequestRetention = time.Minute

// Result is what applying one command produced.
type Result struct {
	// Lease is the granted or extended lease.
	Lease *coordinator.Lease
	// Queued is true when an acquire joined the lock's waiting line.
	Queued bool
	// Members is the service's membership after a register/deregister.
	Members *coordinator.Members
	// Batch is the outcome of each lease of a keepalive-batch, in the
	// order of the command's Leases.
	Batch []BatchItem
	// Err is the domain error, if the command was refused; a refused command
	// changes nothing but the log clock.
	Err error
}

// Machine is the replicated state. Apply is called by one goroutine (Raft's
// FSM goroutine, or a test); reads may come from any goroutine.
type Machine struct {
	mu      sync.RWMutex
	st      state
	changed chan struct{} // closed and replaced after every Apply
}

// state is everything that is replicated; it is what a snapshot stores, and
// its JSON encoding is canonical (encoding/json sorts map keys), which makes
// it usable for hashing replicas against each other.
type state struct {
	// Index is the Raft index of the last applied entry.
	Index uint64 `json:"index"`
	Clock clock  `json:"clock"`
	// LastToken is the highest fencing token granted so far.
	LastToken uint64              `json:"last_token"`
	Locks     map[string]*lock    `json:"locks"`
	Requests  map[string]*request `json:"requests"`
	Services  map[string]*service `json:"services"`
	// Epoch is the cluster's epoch, fixed by the first init entry after
	// bootstrap and carried by every lease: the fence orders writes by
	// (epoch, token), so a cluster rebuilt from nothing (tokens restart
	// low, epoch is larger) is not fenced out by the old cluster's tokens.
	// Zero until the first leader has written it.
	Epoch uint64 `json:"epoch,omitempty"`
	// Admitted maps a server id to the incarnation (a random id a node
	// draws when it starts with an empty data directory) the leader has
	// admitted as a voter.
	Admitted map[string]string `json:"admitted,omitempty"`
}

// clock is the machine's log time. Term is the Raft term of the last applied
// entry; Offset converts that term's leader clock to log time.
type clock struct {
	Term   uint64 `json:"term"`
	Offset int64  `json:"offset"`
	Now    int64  `json:"now"`
}

// advance moves log time to the entry's stamp. A new term rebases: log time
// continues from where it was, and the new leader's clock only counts from
// its first entry on.
func (c *clock) advance(term uint64, leaderNow int64) {
	if term != c.Term {
		c.Term = term
		c.Offset = leaderNow - c.Now
	}
	if t := leaderNow - c.Offset; t > c.Now {
		c.Now = t // never backwards, even if proposals race within a term
	}
}

type lock struct {
	Holder  *lease   `json:"holder,omitempty"`
	Waiters []waiter `json:"waiters,omitempty"`
}

type lease struct {
	ID        string `json:"id"`
	RequestID string `json:"rid"`
	Owner     string `json:"owner,omitempty"`
	// Caller is the identity the lease was granted to: only it may keep
	// the lease alive or release it (checkHolder).
	Caller   string `json:"caller,omitempty"`
	Token    uint64 `json:"token"`
	TTL      int64  `json:"ttl"`
	Deadline int64  `json:"deadline"`
}

type waiter struct {
	RequestID string `json:"rid"`
	Owner     string `json:"owner,omitempty"`
	Caller    string `json:"caller,omitempty"`
	TTL       int64  `json:"ttl"`
	Until     int64  `json:"until"`
	// Seq is the index of the request's first acquire: the line is ordered
	// by it, so a retry that re-enters the line takes its old place.
	Seq uint64 `json:"seq,omitempty"`
}

// request remembers what an acquire request id led to.
type request struct {
	Lock string `json:"lock"`
	// Caller is the identity that first sent the request: a retry or a
	// cancel from any other is refused, so a request id seen on the wire
	// cannot be replayed to read the lease it was granted.
	Caller  string `json:"caller,omitempty"`
	LeaseID string `json:"lease,omitempty"` // empty while queued
	// EndedAt is the log time at which the lease (or the wait) ended; zero
	// while it is live.
	EndedAt int64 `json:"ended,omitempty"`
	// Seq is the index of the request's first acquire (its place in line).
	Seq uint64 `json:"seq,omitempty"`
	// Attempt is the newest attempt of the request the log has seen. Only
	// that attempt may cancel the wait: a cancel from an attempt its client
	// abandoned, applied after the retry, must not end the retry's lease.
	Attempt uint64 `json:"attempt,omitempty"`
	// Withdrawn means the request ended without a lease it still holds: its
	// wait was cancelled or ran out (or a lease granted to a cancelled wait
	// was given back). A retry of it joins the line again at Seq.
	Withdrawn bool `json:"withdrawn,omitempty"`
}

type service struct {
	Version uint64             `json:"version"`
	Members map[string]*member `json:"members"`
	// Ring is the encoded ring.Snapshot of the members (MarshalBinary). It
	// is replicated state, not a cache: ring.Rebalance depends on the
	// previous table, so the table is the product of the whole history of
	// membership changes, and only the log has that history (ADR 0003).
	Ring []byte `json:"ring,omitempty"`
	// ring is Ring decoded, kept so a change rebalances without decoding.
	ring *ring.Snapshot
}

// rebalance advances the service's ring to its current member set. It is
// called in Apply after every change of the set, so every replica, applying
// the same entries in the same order, computes the same table.
func (svc *service) rebalance() error {
	next, err := ring.Rebalance(svc.ring, ringMembers(svc.Members))
	if err != nil {
		return err
	}
	if next == svc.ring && svc.Ring != nil {
		return nil // same set: Rebalance returned prev itself
	}
	enc, err := next.MarshalBinary()
	if err != nil {
		return err
	}
	svc.ring, svc.Ring = next, enc
	return nil
}

func ringMembers(ms map[string]*member) []ring.Member {
	out := make([]ring.Member, 0, len(ms))
	for _, inst := range sortedKeys(ms) {
		out = append(out, ring.Member{Name: inst})
	}
	return out
}

type member struct {
	Addr string `json:"addr"`
	// Caller is the identity that registered the entry: only it may
	// heartbeat it, and while it lives nobody else may register it again.
	Caller   string `json:"caller,omitempty"`
	TTL      int64  `json:"ttl"`
	Deadline int64  `json:"deadline"`
}

// New returns an empty machine.
func New() *Machine {
	return &Machine{st: emptyState(), changed: make(chan struct{})}
}

func emptyState() state {
	return state{Locks: map[string]*lock{}, Requests: map[string]*request{}, Services: map[string]*service{}}
}

// Apply applies the command of the log entry at index, written in term. It
// is deterministic: the result and the new state depend only on the old state
// and the arguments.
func (m *Machine) Apply(index, term uint64, cmd Command) Result {
	m.mu.Lock()
	defer m.notify()
	defer m.mu.Unlock()
	s := &m.st
	s.Index = index
	s.Clock.advance(term, cmd.Now)
	now := s.Clock.Now
	switch cmd.Op {
	case OpTick:
		s.sweep(index, now)
		return Result{}
	case OpAcquire:
		return s.acquire(index, now, cmd)
	case OpKeepAlive:
		return s.keepAlive(index, now, cmd)
	case OpKeepAliveBatch:
		return s.keepAliveBatch(index, now, cmd)
	case OpRelease:
		return s.release(index, now, cmd)
	case OpCancelWait:
		return s.cancelWait(index, now, cmd)
	case OpRegister:
		return s.register(index, now, cmd)
	case OpHeartbeat:
		return s.heartbeat(now, cmd)
	case OpDeregister:
		return s.deregister(index, cmd)
	case OpInit:
		if s.Epoch == 0 && cmd.Epoch > 0 {
			s.Epoch = cmd.Epoch
		}
		return Result{}
	case OpAdmit:
		if cmd.Server == "" || cmd.Incarnation == "" {
			return Result{Err: errs.E(errs.Invalid, "admit needs a server and an incarnation")}
		}
		if s.Admitted == nil {
			s.Admitted = map[string]string{}
		}
		s.Admitted[cmd.Server] = cmd.Incarnation
		return Result{}
	default:
		return Result{Err: fmt.Errorf("fsm: unknown op %q", cmd.Op)}
	}
}

// Skip records that the entry at index carried no command for the machine
// (a Raft configuration change), so the applied index stays exact.
func (m *Machine) Skip(index uint64) {
	m.mu.Lock()
	m.st.Index = index
	m.mu.Unlock()
	m.notify()
}

func (m *Machine) notify() {
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// Changed returns a channel closed at the next Apply; waiters re-read state
// and call Changed again.
func (m *Machine) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// nextToken allocates the fencing token for a grant made by the entry at
// index: the index itself, or one above the last token if this entry already
// granted one.
func (s *state) nextToken(index uint64) uint64 {
	t := max(s.LastToken+1, index)
	s.LastToken = t
	return t
}

func leaseID(requestID string, token uint64) string {
	sum := sha256.Sum256([]byte(requestID + "/" + strconv.FormatUint(token, 10)))
	return hex.EncodeToString(sum[:12])
}

func (s *state) grant(index uint64, now int64, name string, l *lock, rid, owner, caller string, ttl int64) *lease {
	tok := s.nextToken(index)
	l.Holder = &lease{ID: leaseID(rid, tok), RequestID: rid, Owner: owner, Caller: caller, Token: tok, TTL: ttl, Deadline: now + ttl}
	r := s.Requests[rid]
	if r == nil {
		r = &request{Lock: name, Caller: caller, Seq: index}
		s.Requests[rid] = r
	}
	r.LeaseID, r.EndedAt, r.Withdrawn = l.Holder.ID, 0, false
	return l.Holder
}

// endHolder ends the lock's lease and hands the lock to the first waiter that
// is still waiting. forget drops the request record (an explicit release: the
// client knows the outcome and will not retry).
func (s *state) endHolder(index uint64, now int64, name string, l *lock, forget bool) {
	if h := l.Holder; h != nil {
		if forget {
			delete(s.Requests, h.RequestID)
		} else if r := s.Requests[h.RequestID]; r != nil {
			r.EndedAt = now
		}
		l.Holder = nil
	}
	s.promote(index, now, name, l)
}

// promote grants a free lock to the first live waiter, dropping waiters whose
// wait ran out, and deletes the lock once nobody holds or wants it.
func (s *state) promote(index uint64, now int64, name string, l *lock) {
	for l.Holder == nil && len(l.Waiters) > 0 {
		w := l.Waiters[0]
		l.Waiters = l.Waiters[1:]
		if w.Until <= now {
			s.withdraw(w.RequestID, now)
			continue
		}
		s.grant(index, now, name, l, w.RequestID, w.Owner, w.Caller, w.TTL)
	}
	if len(l.Waiters) == 0 {
		l.Waiters = nil
	}
	if l.Holder == nil && len(l.Waiters) == 0 {
		delete(s.Locks, name)
	}
}

// withdraw ends a request that holds nothing: its wait ran out or was
// cancelled. The record stays (for RequestRetention) so a retry keeps its
// place in line.
func (s *state) withdraw(rid string, now int64) {
	if r := s.Requests[rid]; r != nil {
		r.EndedAt, r.Withdrawn = now, true
	}
}

// expireLock ends the lock's lease if its deadline has passed in log time.
func (s *state) expireLock(index uint64, now int64, name string, l *lock) {
	if l.Holder != nil && l.Holder.Deadline <= now {
		s.endHolder(index, now, name, l, false)
	}
	if l.Holder == nil {
		s.promote(index, now, name, l)
	}
}

// sweep expires everything whose deadline has passed: leases (promoting
// waiters), waits, registrations and old request records. Locks and services
// are visited in sorted order so that token allocation is deterministic.
func (s *state) sweep(index uint64, now int64) {
	for _, name := range sortedKeys(s.Locks) {
		l := s.Locks[name]
		if len(l.Waiters) > 0 {
			kept := l.Waiters[:0]
			for _, w := range l.Waiters {
				if w.Until > now {
					kept = append(kept, w)
				} else {
					s.withdraw(w.RequestID, now)
				}
			}
			l.Waiters = kept
		}
		s.expireLock(index, now, name, l)
	}
	for rid, r := range s.Requests {
		if r.EndedAt != 0 && now-r.EndedAt >= int64(RequestRetention) {
			delete(s.Requests, rid)
		}
	}
	for _, svcName := range sortedKeys(s.Services) {
		svc := s.Services[svcName]
		expired := false
		for inst, mb := range svc.Members {
			if mb.Deadline <= now {
				delete(svc.Members, inst)
				svc.Version = index
				expired = true
			}
		}
		if len(svc.Members) == 0 {
			delete(s.Services, svcName)
			continue
		}
		if expired {
			// Removing members cannot exceed any ring limit, so this
			// cannot fail; the error is checked all the same.
			if err := svc.rebalance(); err != nil {
				panic(fmt.Sprintf("fsm: rebalance %s after expiry: %v", svcName, err))
			}
		}
	}
}

func (s *state) acquire(index uint64, now int64, c Command) Result {
	req := coordinator.AcquireRequest{Lock: c.Lock, Owner: c.Owner, RequestID: c.RequestID, TTL: c.TTL, Wait: c.Wait}
	if err := req.Validate(); err != nil {
		return Result{Err: err}
	}
	l := s.Locks[c.Lock]
	if l != nil {
		s.expireLock(index, now, c.Lock, l)
		l = s.Locks[c.Lock]
	}
	if r := s.Requests[c.RequestID]; r != nil {
		return s.retry(index, now, c, r)
	}
	if s.overLimit(c) {
		return Result{Err: coordinator.ErrTooManyLocks}
	}
	if l == nil {
		l = &lock{}
		s.Locks[c.Lock] = l
	}
	s.Requests[c.RequestID] = &request{Lock: c.Lock, Caller: c.Caller, Seq: index, Attempt: c.Attempt}
	if l.Holder == nil {
		h := s.grant(index, now, c.Lock, l, c.RequestID, c.Owner, c.Caller, int64(c.TTL))
		return Result{Lease: s.view(c.Lock, h)}
	}
	if c.Wait <= 0 {
		delete(s.Requests, c.RequestID)
		return Result{Err: coordinator.ErrLockHeld}
	}
	s.enqueue(l, waiter{RequestID: c.RequestID, Owner: c.Owner, Caller: c.Caller, TTL: int64(c.TTL), Until: now + int64(c.Wait), Seq: index})
	return Result{Queued: true}
}

// retry handles an acquire whose request id the log already knows: it
// never takes effect twice, and it keeps the request's place in line.
//   - A newer attempt takes the request over (only it may cancel the wait
//     from now on); an older one, arriving late, changes nothing.
//   - Holding: the same lease is reported. Queued: it stays where it is,
//     its wait extended by the retry's.
//   - Withdrawn (the wait of an earlier attempt ended): it joins the line
//     again at its first acquire's place, or is granted if the lock is free.
//   - A lease that ended: the caller is told so and must start afresh.
func (s *state) retry(index uint64, now int64, c Command, r *request) Result {
	if err := checkHolder(r.Caller, c.Caller); err != nil {
		return Result{Err: err}
	}
	if r.Lock != c.Lock {
		return Result{Err: coordinator.ErrLeaseExpired}
	}
	if c.Attempt < r.Attempt {
		return s.outcome(c.RequestID) // a late, abandoned attempt: report, change nothing
	}
	r.Attempt = c.Attempt
	l := s.Locks[c.Lock]
	switch {
	case r.Withdrawn:
		// A withdrawn request holds and waits for nothing, so taking it
		// up again is a new claim on the caller's allowance: without this
		// check, acquires queued with a short wait and retried later would
		// hold any number of locks.
		if s.overLimit(c) {
			return Result{Err: coordinator.ErrTooManyLocks}
		}
		if l == nil {
			l = &lock{}
			s.Locks[c.Lock] = l
		}
		if l.Holder == nil {
			h := s.grant(index, now, c.Lock, l, c.RequestID, c.Owner, c.Caller, int64(c.TTL))
			return Result{Lease: s.view(c.Lock, h)}
		}
		if c.Wait <= 0 {
			r.EndedAt = now // still withdrawn; retained from now
			return Result{Err: coordinator.ErrLockHeld}
		}
		r.EndedAt, r.Withdrawn = 0, false
		s.enqueue(l, waiter{RequestID: c.RequestID, Owner: c.Owner, Caller: c.Caller, TTL: int64(c.TTL), Until: now + int64(c.Wait), Seq: r.Seq})
		return Result{Queued: true}
	case r.EndedAt != 0:
		return Result{Err: coordinator.ErrLeaseExpired}
	}
	if l != nil && l.Holder != nil && l.Holder.ID == r.LeaseID && r.LeaseID != "" {
		return Result{Lease: s.view(c.Lock, l.Holder)}
	}
	if l != nil {
		for i := range l.Waiters {
			if l.Waiters[i].RequestID == c.RequestID {
				l.Waiters[i].Until = max(l.Waiters[i].Until, now+int64(c.Wait))
			}
		}
	}
	return Result{Queued: true}
}

// enqueue puts w in line by Seq (first acquire first); a new request has the
// highest Seq so far and goes to the back.
func (s *state) enqueue(l *lock, w waiter) {
	i := len(l.Waiters)
	for i > 0 && l.Waiters[i-1].Seq > w.Seq {
		i--
	}
	l.Waiters = slices.Insert(l.Waiters, i, w)
}

// checkHolder is the one rule of ownership in the log: what a caller
// created (a lease, a queued acquire, a member entry) only the same caller
// may change. recorded is the caller stored at creation, caller the one of
// the entry being applied; both are empty on a coordinator without TLS.
// Every command that changes an existing lease or entry goes through it
// (keepalive, release, an acquire's retry and cancel, heartbeat, a batched
// renewal), so the rule is decided in the log, where expiry and grants are.
func checkHolder(recorded, caller string) error {
	if recorded != caller {
		return coordinator.ErrNotHolder
	}
	return nil
}

// holderFor finds the lock whose current lease is leaseID and checks that
// caller holds it, expiring the lease first if its time is up.
func (s *state) holderFor(index uint64, now int64, name, leaseID, caller string) (*lock, error) {
	l := s.Locks[name]
	if l == nil {
		return nil, coordinator.ErrLockNotFound
	}
	s.expireLock(index, now, name, l)
	if l.Holder == nil || l.Holder.ID != leaseID {
		return nil, coordinator.ErrLeaseNotHeld
	}
	if err := checkHolder(l.Holder.Caller, caller); err != nil {
		return nil, err
	}
	return l, nil
}

// overLimit tells whether c's caller already has as many claims as the
// limit its entry carries (no limit on a coordinator without identities).
func (s *state) overLimit(c Command) bool {
	return c.MaxLocks > 0 && c.Caller != "" && s.claimsOf(c.Caller) >= c.MaxLocks
}

// claimsOf counts the leases caller holds and the acquires it has in line.
// Every queued acquire counts, also a second one on the same lock or one on
// a lock the caller holds: each is state the log keeps, and counting locks
// instead let one identity queue without bound on a single lock.
func (s *state) claimsOf(caller string) int {
	n := 0
	for _, l := range s.Locks {
		if l.Holder != nil && l.Holder.Caller == caller {
			n++
		}
		for _, w := range l.Waiters {
			if w.Caller == caller {
				n++
			}
		}
	}
	return n
}

func (s *state) keepAlive(index uint64, now int64, c Command) Result {
	l, err := s.holderFor(index, now, c.Lock, c.LeaseID, c.Caller)
	if err != nil {
		return Result{Err: err}
	}
	l.Holder.Deadline = now + l.Holder.TTL
	return Result{Lease: s.view(c.Lock, l.Holder)}
}

func (s *state) release(index uint64, now int64, c Command) Result {
	l, err := s.holderFor(index, now, c.Lock, c.LeaseID, c.Caller)
	if err != nil {
		return Result{Err: err}
	}
	s.endHolder(index, now, c.Lock, l, true)
	return Result{}
}

// cancelWait withdraws an acquire whose caller stopped waiting: it leaves the
// line, or, if it was granted meanwhile, gives the lock up so that a lease
// nobody knows about does not block the lock for a whole TTL. Only the
// request's newest attempt can do that: the cancel of an attempt whose
// client has already retried is ignored, so it cannot end the lease the
// retry was given (the retry reads the grant, the late cancel would give
// it back and hand the lock to the next waiter: two holders).
func (s *state) cancelWait(index uint64, now int64, c Command) Result {
	r := s.Requests[c.RequestID]
	l := s.Locks[c.Lock]
	if r == nil || r.Lock != c.Lock || r.Attempt != c.Attempt || l == nil || checkHolder(r.Caller, c.Caller) != nil {
		return Result{}
	}
	if l.Holder != nil && l.Holder.RequestID == c.RequestID {
		s.endHolder(index, now, c.Lock, l, false)
		s.withdraw(c.RequestID, now)
		return Result{}
	}
	for i, w := range l.Waiters {
		if w.RequestID == c.RequestID {
			l.Waiters = slices.Delete(l.Waiters, i, i+1)
			s.withdraw(c.RequestID, now)
			break
		}
	}
	s.promote(index, now, c.Lock, l)
	return Result{}
}

func (s *state) register(index uint64, now int64, c Command) Result {
	m := coordinator.Member{Service: c.Service, Instance: c.Instance, Addr: c.Addr, TTL: c.TTL}
	if err := m.Validate(); err != nil {
		return Result{Err: err}
	}
	svc := s.Services[c.Service]
	if svc == nil {
		svc = &service{Members: map[string]*member{}}
		s.Services[c.Service] = svc
	}
	old := svc.Members[c.Instance]
	if old != nil && old.Deadline > now && checkHolder(old.Caller, c.Caller) != nil {
		// Another identity's live entry: taking it over would send its
		// callers (their keys, their card numbers) to this address.
		return Result{Err: coordinator.ErrMemberTaken}
	}
	svc.Members[c.Instance] = &member{Addr: c.Addr, Caller: c.Caller, TTL: int64(c.TTL), Deadline: now + int64(c.TTL)}
	if old == nil {
		if err := svc.rebalance(); err != nil {
			// Only a ring that cannot hold one more member gets here; the
			// register is refused and the set stays as it was.
			delete(svc.Members, c.Instance)
			if len(svc.Members) == 0 && svc.ring == nil {
				delete(s.Services, c.Service)
			}
			return Result{Err: errs.E(errs.Invalid, fmt.Sprintf("cannot add %s to the ring of %s: %v", c.Instance, c.Service, err))}
		}
	}
	if old == nil || old.Addr != c.Addr {
		svc.Version = index
	}
	ms := s.members(c.Service)
	return Result{Members: &ms}
}

func (s *state) heartbeat(now int64, c Command) Result {
	svc := s.Services[c.Service]
	if svc == nil || svc.Members[c.Instance] == nil || svc.Members[c.Instance].Deadline <= now {
		return Result{Err: coordinator.ErrMemberNotFound}
	}
	mb := svc.Members[c.Instance]
	if err := checkHolder(mb.Caller, c.Caller); err != nil {
		return Result{Err: err}
	}
	mb.Deadline = now + mb.TTL
	return Result{}
}

func (s *state) deregister(index uint64, c Command) Result {
	svc := s.Services[c.Service]
	if svc == nil || svc.Members[c.Instance] == nil {
		return Result{Err: coordinator.ErrMemberNotFound}
	}
	// The operator may evict any entry; everyone else only their own.
	if err := checkHolder(svc.Members[c.Instance].Caller, c.Caller); err != nil && !strings.HasPrefix(c.Caller, coordinator.Admin+"/") {
		return Result{Err: err}
	}
	delete(svc.Members, c.Instance)
	svc.Version = index
	if err := svc.rebalance(); err != nil {
		panic(fmt.Sprintf("fsm: rebalance %s after deregister: %v", c.Service, err)) // removal cannot exceed a limit
	}
	if len(svc.Members) == 0 {
		// Keep the version so that long polls see the change; an empty
		// service is dropped on the next sweep.
		svc.Members = map[string]*member{}
	}
	ms := s.members(c.Service)
	return Result{Members: &ms}
}

func (s *state) view(name string, h *lease) *coordinator.Lease {
	return &coordinator.Lease{
		ID: h.ID, Lock: name, Owner: h.Owner, Holder: h.Caller, Token: coordinator.FenceToken(h.Token), Epoch: s.Epoch,
		TTL: time.Duration(h.TTL), Remaining: time.Duration(max(h.Deadline-s.Clock.Now, 0)),
	}
}

func (s *state) members(name string) coordinator.Members {
	out := coordinator.Members{Service: name, Members: []coordinator.Member{}}
	svc := s.Services[name]
	if svc == nil {
		return out
	}
	out.Version = svc.Version
	out.Ring = svc.Ring // never mutated in place, so sharing it is safe
	out.RingFingerprint = svc.ring.Fingerprint()
	for _, inst := range sortedKeys(svc.Members) {
		mb := svc.Members[inst]
		out.Members = append(out.Members, coordinator.Member{Service: name, Instance: inst, Addr: mb.Addr, TTL: time.Duration(mb.TTL)})
	}
	return out
}

// Lock returns the state of a lock as of the last applied entry.
func (m *Machine) Lock(name string) (coordinator.Lock, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l := m.st.Locks[name]
	if l == nil {
		return coordinator.Lock{}, coordinator.ErrLockNotFound
	}
	out := coordinator.Lock{Name: name, Waiters: len(l.Waiters)}
	if l.Holder != nil {
		out.Holder = m.st.view(name, l.Holder)
	}
	return out, nil
}

// Outcome reports what the acquire with request id rid has led to so far: a
// lease, still queued, or an error once its wait or lease has ended.
func (m *Machine) Outcome(rid string) Result {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.outcome(rid)
}

func (s *state) outcome(rid string) Result {
	r := s.Requests[rid]
	if r == nil || r.EndedAt != 0 {
		return Result{Err: coordinator.ErrLockHeld}
	}
	if l := s.Locks[r.Lock]; l != nil && l.Holder != nil && l.Holder.ID == r.LeaseID && r.LeaseID != "" {
		return Result{Lease: s.view(r.Lock, l.Holder)}
	}
	return Result{Queued: true}
}

// Attempt returns the newest attempt of request rid the log has seen.
func (m *Machine) Attempt(rid string) uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if r := m.st.Requests[rid]; r != nil {
		return r.Attempt
	}
	return 0
}

// Epoch returns the cluster epoch (zero until the first init entry).
func (m *Machine) Epoch() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Epoch
}

// Admitted returns the incarnation of server id the leader last admitted,
// or "".
func (m *Machine) Admitted(id string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Admitted[id]
}

// Members returns a service's membership as of the last applied entry.
func (m *Machine) Members(service string) coordinator.Members {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.members(service)
}

// Index returns the Raft index of the last applied entry.
func (m *Machine) Index() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Index
}

// Clock returns the term of the last applied entry and the offset from that
// term's leader clock to log time; a leader uses it to plan expiry ticks.
func (m *Machine) Clock() (term uint64, offset, now int64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.st.Clock.Term, m.st.Clock.Offset, m.st.Clock.Now
}

// NextDeadline returns the earliest log time at which something expires
// (a lease, a wait or a registration), and false if nothing can expire.
func (m *Machine) NextDeadline() (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	next, ok := int64(0), false
	take := func(t int64) {
		if !ok || t < next {
			next, ok = t, true
		}
	}
	for _, l := range m.st.Locks {
		if l.Holder != nil {
			take(l.Holder.Deadline)
		}
		for _, w := range l.Waiters {
			take(w.Until)
		}
	}
	for _, svc := range m.st.Services {
		for _, mb := range svc.Members {
			take(mb.Deadline)
		}
		if len(svc.Members) == 0 {
			take(m.st.Clock.Now)
		}
	}
	for _, r := range m.st.Requests {
		if r.EndedAt != 0 {
			take(r.EndedAt + int64(RequestRetention))
		}
	}
	return next, ok
}

// ActiveLeases counts the locks that have a holder.
func (m *Machine) ActiveLeases() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, l := range m.st.Locks {
		if l.Holder != nil {
			n++
		}
	}
	return n
}

// Snapshot returns the canonical encoding of the whole state.
func (m *Machine) Snapshot() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b, err := json.Marshal(&m.st)
	if err != nil {
		panic(err) // the state holds only strings, integers, maps and slices
	}
	return b
}

// Restore replaces the state with a snapshot's.
func (m *Machine) Restore(r io.Reader) error {
	st := emptyState()
	if err := json.NewDecoder(r).Decode(&st); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if st.Locks == nil {
		st.Locks = map[string]*lock{}
	}
	if st.Requests == nil {
		st.Requests = map[string]*request{}
	}
	if st.Services == nil {
		st.Services = map[string]*service{}
	}
	for name, svc := range st.Services {
		if svc.Members == nil {
			svc.Members = map[string]*member{}
		}
		if svc.Ring == nil {
			// A snapshot written before the coordinator kept rings: every
			// replica restoring it builds the same canonical table.
			if err := svc.rebalance(); err != nil {
				return fmt.Errorf("fsm: restore: ring of %s: %w", name, err)
			}
			continue
		}
		r, err := ring.Decode(svc.Ring)
		if err != nil {
			return fmt.Errorf("fsm: restore: ring of %s: %w", name, err)
		}
		svc.ring = r
	}
	m.mu.Lock()
	m.st = st
	m.mu.Unlock()
	m.notify()
	return nil
}

// Hash returns a digest of the state; two replicas at the same index must
// have the same hash.
func (m *Machine) Hash() string {
	_, h := m.IndexHash()
	return h
}

// IndexHash returns the applied index and the state's digest, read together.
func (m *Machine) IndexHash() (uint64, string) {
	m.mu.RLock()
	idx := m.st.Index
	m.mu.RUnlock()
	b := m.Snapshot()
	sum := sha256.Sum256(b)
	// The digest covers the index too, so a concurrent Apply between the two
	// reads shows up as a digest that no other replica at idx can match;
	// callers compare only equal indexes and retry.
	return idx, hex.EncodeToString(sum[:])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
