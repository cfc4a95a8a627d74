package console

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/pkg/ring"
)

// Services are the partitioned services whose rings the console draws.
var Services = []string{"orders", "payments"}

// Limits on what one View holds, so the page stays small whatever the load:
// the console shows the latest records, not all of them.
const (
	maxWatched = 8  // customers whose orders and payments are read
	perList    = 20 // orders (and payments) in one view
	maxKeys    = 10 // idempotency keys the console sent
	maxStorms  = 5  // storms kept with their results
	// movedFor is how long the slots of a membership change stay marked as
	// moved, so the page can animate them.
	movedFor = 10 * time.Second
	// releasedFor is how long a released lock stays on the page.
	releasedFor = 30 * time.Second
	// maxLocks bounds the locks other than partition leases (the per-key
	// design's customer locks, held and recently released); the partition
	// leases are customer.Partitions (64) more, one per partition.
	maxLocks = 20
)

// DemoCaller is the caller the dev and compose stacks give the demo API
// key (payonce-demo-key-1; deploy/secrets/*_api_keys, cmd/devstack).
const DemoCaller = "demo"

// Config configures a Console.
type Config struct {
	// Stack is what the console reads and acts on.
	Stack Stack
	// Control is the dev stack's control endpoint; nil under docker compose.
	Control Control
	// Caller is the API caller the Stack's key belongs to (the services map
	// a key to a caller with their *_API_KEYS, "caller:key"): the demo
	// caller, "demo". A customer id names a customer of one caller, and the
	// services place the caller's customer, so a lookup needs it.
	Caller string
	// DevMode allows actions; without it every action is refused.
	DevMode bool
	// JaegerURL is the base URL of a Jaeger UI for trace links, or "".
	JaegerURL string
	// Traces says the Stack can fetch traces, so the page offers to draw
	// them inline.
	Traces bool
	// Interval is how often the stack is read and a new View published.
	Interval time.Duration
	// Customers are watched from the start (more are added by lookups and
	// storms, the most recent first).
	Customers []string
	// PauseFor is how long "pause an instance" freezes it: longer than the
	// payments lock TTL, so its lease expires while it sleeps.
	PauseFor time.Duration
	// OutageFor is how long "stop a database" keeps it away, unless it is
	// started again from the page first.
	OutageFor time.Duration
}

// Console reads the stack every Interval into a View and hands each View to
// its subscribers. Its methods are safe for concurrent use.
type Console struct {
	cfg Config

	mu        sync.Mutex
	view      View
	subs      map[chan View]struct{}
	watched   []string
	timelines map[string][]Transition
	traces    map[string]string // order id -> trace id of the request that made it
	rings     map[string]*ring.Snapshot
	moved     map[string]RingView // service -> the last move seen (Moved, MovedAt)
	keys      []KeyCounts
	storms    []StormResult
	locksSeen map[string]seenLock // by name: the last grant seen, and when
	// lastRead is each watched customer's records as last read, shown
	// (marked stale) while the service that holds them does not answer.
	lastRead map[string]customerRecords
}

type customerRecords struct {
	orders   []Order
	payments []Payment
}

type seenLock struct {
	lock LockView
	at   time.Time
}

// New returns a console; Run makes it read the stack.
func New(cfg Config) *Console {
	if cfg.Interval <= 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.OutageFor <= 0 {
		cfg.OutageFor = time.Minute
	}
	if cfg.PauseFor <= 0 {
		cfg.PauseFor = 20 * time.Second
	}
	if cfg.Caller == "" {
		cfg.Caller = DemoCaller
	}
	c := &Console{
		cfg: cfg, subs: map[chan View]struct{}{}, timelines: map[string][]Transition{},
		traces: map[string]string{}, rings: map[string]*ring.Snapshot{}, moved: map[string]RingView{},
		locksSeen: map[string]seenLock{}, lastRead: map[string]customerRecords{},
	}
	for _, id := range cfg.Customers {
		c.Watch(id)
	}
	c.view = View{DevMode: cfg.DevMode, Control: cfg.Control != nil, JaegerURL: cfg.JaegerURL, Traces: cfg.Traces,
		Coordinators: []CoordinatorNode{}, Partitions: []PartitionLease{}, Locks: []LockView{}, Rings: []RingView{}, Orders: []Record{}, Payments: []Record{},
		Idempotency: []IdempotencyCounts{}, FenceRefusals: []FenceRefusals{}, Keys: []KeyCounts{}, Storms: []StormResult{}, Problems: []string{}}
	return c
}

// Run reads the stack every Interval until ctx ends.
func (c *Console) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		c.Refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// View returns the latest view.
func (c *Console) View() View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view
}

// Subscribe returns a channel that receives every new view (a slow reader
// misses intermediate ones, never the latest) and a function that ends the
// subscription.
func (c *Console) Subscribe() (<-chan View, func()) {
	ch := make(chan View, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// Watch adds a customer to the ones whose orders and payments are shown,
// as the most recent.
func (c *Console) Watch(customerID string) {
	if customerID == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watched = slices.DeleteFunc(c.watched, func(s string) bool { return s == customerID })
	c.watched = append([]string{customerID}, c.watched...)
	if len(c.watched) > maxWatched {
		c.watched = c.watched[:maxWatched]
	}
}

// Placement is where the console's caller's customer lives on one
// service's ring.
type Placement struct {
	Service string `json:"service"`
	// Key is what the service places on its ring for the customer: orders
	// the caller's customer ("demo:alice"), payments the name of that
	// customer's partition ("payments-partition-17").
	Key   string `json:"key"`
	Slot  int    `json:"slot"`
	Owner string `json:"owner"`
	// Successors are the owner followed by the next distinct members, the
	// order in which instances would take the customer over.
	Successors []string `json:"successors"`
	// Partition is the customer's payments partition (payments only), and
	// Lease that partition's lease as the latest view saw it (nil when no
	// one holds it).
	Partition *int            `json:"partition,omitempty"`
	Lease     *PartitionLease `json:"lease,omitempty"`
}

// Lookup places the caller's customer on every ring and watches it. It
// computes the ring key exactly as each service does (internal/customer:
// orders places Key(caller, id), payments the partition of
// Lock(caller, id)) on the same pkg/ring snapshot the coordinator
// replicates, so the owner it names is the instance that serves the
// customer when the console's caller asks for it.
func (c *Console) Lookup(customerID string) ([]Placement, error) {
	if err := validCustomer(customerID); err != nil {
		return nil, err
	}
	c.Watch(customerID)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []Placement{}
	for _, svc := range Services {
		s := c.rings[svc]
		if s == nil {
			continue
		}
		p := Placement{Service: svc, Key: customer.Key(c.cfg.Caller, customerID)}
		if svc == "payments" {
			n := customer.PartitionOf(customer.Lock(c.cfg.Caller, customerID))
			p.Key, p.Partition = customer.PartitionName(n), &n
			if i := slices.IndexFunc(c.view.Partitions, func(l PartitionLease) bool { return l.Partition == n }); i >= 0 {
				if l := c.view.Partitions[i]; l.Holder != "" {
					p.Lease = &l
				}
			}
		}
		p.Owner, _ = s.Owner(p.Key)
		p.Slot, p.Successors = s.Slot(p.Key), s.Successors(p.Key, s.Len(), nil)
		out = append(out, p)
	}
	return out, nil
}

// Refresh reads the stack once, publishes the new view and returns it. Parts
// that do not answer are listed in the view's Problems; the rest is shown.
func (c *Console) Refresh(ctx context.Context) View {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, max(2*time.Second, c.cfg.Interval))
	defer cancel()
	v := View{DevMode: c.cfg.DevMode, Control: c.cfg.Control != nil, JaegerURL: c.cfg.JaegerURL, Traces: c.cfg.Traces,
		Problems: []string{}, Locks: []LockView{}, Partitions: []PartitionLease{}, Keys: []KeyCounts{}, Storms: []StormResult{}}
	var mu sync.Mutex // guards v.Problems while the reads below run at once
	problem := func(format string, args ...any) {
		mu.Lock()
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var wg sync.WaitGroup

	urls := c.cfg.Stack.CoordinatorURLs()
	v.Coordinators = make([]CoordinatorNode, len(urls))
	for i, u := range urls {
		wg.Go(func() {
			st, err := c.cfg.Stack.NodeStatus(ctx, u)
			if err != nil {
				problem("coordinator %s: %v", u, err)
				v.Coordinators[i] = CoordinatorNode{URL: u}
				return
			}
			v.Coordinators[i] = CoordinatorNode{URL: u, Up: true, NodeStatus: st}
		})
	}
	members := make([]Membership, len(Services))
	for i, svc := range Services {
		wg.Go(func() {
			m, err := c.cfg.Stack.Membership(ctx, svc)
			if err != nil {
				problem("%s membership: %v", svc, err)
			}
			m.Service = svc
			members[i] = m
		})
	}
	wg.Go(func() {
		f, err := c.cfg.Stack.BankFaults(ctx)
		if err != nil {
			problem("bank: %v", err)
			return
		}
		n, err := c.cfg.Stack.BankCaptures(ctx, "")
		if err != nil {
			problem("bank ledger: %v", err)
		}
		v.Bank = BankView{Faults: f, Captures: n}
	})
	if c.cfg.Control != nil {
		wg.Go(func() {
			ps, err := c.cfg.Control.Processes(ctx)
			if err != nil {
				problem("dev stack control: %v", err)
				return
			}
			v.Processes = ps
		})
		wg.Go(func() {
			dbs, err := c.cfg.Control.Databases(ctx)
			if err != nil {
				problem("dev stack control: %v", err)
				return
			}
			v.Databases = dbs
		})
	}
	wg.Wait()

	v.LeaderID, v.Locks = leaderOf(v.Coordinators)
	v.Partitions, v.Locks = partitionLeases(v.Locks)
	v.Rings = c.ringViews(members)

	// The records and counters need the instances' addresses.
	var orders, all []Instance
	for _, m := range members {
		all = append(all, m.Instances...)
		if m.Service == "orders" {
			orders = m.Instances
		}
	}
	v.Idempotency = make([]IdempotencyCounts, len(all))
	fences := make([]*FenceRefusals, len(all))
	for i, inst := range all {
		wg.Go(func() {
			m, err := c.cfg.Stack.Metrics(ctx, inst)
			if err != nil {
				problem("%s metrics: %v", inst.Name, err)
			}
			m.Idempotency.Instance = inst.Name
			v.Idempotency[i] = m.Idempotency
			if m.Fence != nil && (m.Fence.Refused > 0 || !m.Fence.LastAt.IsZero()) {
				m.Fence.Instance = inst.Name
				fences[i] = m.Fence
			}
		})
	}
	var ords []Order
	var pays []Payment
	staleOrders, stalePayments := map[string]bool{}, map[string]bool{}
	if len(orders) > 0 {
		addr := orders[0].Addr
		var payAddr string
		for _, m := range members {
			if m.Service == "payments" && len(m.Instances) > 0 {
				payAddr = m.Instances[0].Addr
			}
		}
		for _, id := range c.watchedCustomers() {
			wg.Go(func() {
				last := c.lastReadOf(id)
				os, err := c.cfg.Stack.CustomerOrders(ctx, addr, id)
				if err != nil {
					// Its database may be down for a while: keep showing
					// what was read last, marked stale, so the learner sees
					// the order wait and then move when it is back.
					problem("orders of %s: %v", id, err)
					os = last.orders
					mu.Lock()
					staleOrders[id] = true
					mu.Unlock()
				}
				ps := last.payments
				if payAddr != "" {
					if ps, err = c.cfg.Stack.CustomerPayments(ctx, payAddr, id); err != nil {
						problem("payments of %s: %v", id, err)
						ps = last.payments
						mu.Lock()
						stalePayments[id] = true
						mu.Unlock()
					}
				}
				c.setLastRead(id, customerRecords{orders: os, payments: ps})
				mu.Lock()
				ords, pays = append(ords, os...), append(pays, ps...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.SortFunc(v.Problems, cmp.Compare)
	v.FenceRefusals = []FenceRefusals{}
	for _, f := range fences {
		if f != nil {
			v.FenceRefusals = append(v.FenceRefusals, *f)
		}
	}
	slices.SortFunc(v.FenceRefusals, func(a, b FenceRefusals) int { return b.LastAt.Compare(a.LastAt) })

	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.lastRead {
		if !slices.Contains(c.watched, id) {
			delete(c.lastRead, id) // no longer watched
		}
	}
	v.Orders, v.Payments = c.records(ords, pays, staleOrders, stalePayments)
	v.Locks = c.withReleased(v.Locks)
	v.Keys = slices.Clone(c.keys)
	v.Storms = slices.Clone(c.storms)
	v.Seq = c.view.Seq + 1
	v.At = time.Now()
	v.ReadMS = v.At.Sub(began).Milliseconds()
	c.view = v
	for ch := range c.subs {
		select { // keep only the latest view for a slow reader
		case <-ch:
		default:
		}
		ch <- v
	}
	return v
}

func (c *Console) lastReadOf(customerID string) customerRecords {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastRead[customerID]
}

func (c *Console) setLastRead(customerID string, r customerRecords) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastRead[customerID] = r
}

func (c *Console) watchedCustomers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.watched)
}

// leaderOf names the leader: the node that says it leads, else the one most
// nodes name. The locks shown are the leader's replica's, or any node's.
func leaderOf(nodes []CoordinatorNode) (string, []LockView) {
	votes := map[string]int{}
	leader, locks := "", []LockView(nil)
	for _, n := range nodes {
		if !n.Up {
			continue
		}
		if locks == nil {
			locks = n.Locks
		}
		if n.State == "Leader" {
			return n.ID, nonNil(n.Locks)
		}
		if n.LeaderID != "" {
			votes[n.LeaderID]++
		}
	}
	for id, n := range votes {
		if n > votes[leader] || (n == votes[leader] && id < leader) {
			leader = id
		}
	}
	return leader, nonNil(locks)
}

// partitionLeases splits the payments partitions' leases from the other
// locks. When any partition is leased (the partition design, ADR 0070) it
// returns one entry per partition, in partition order, the free ones with
// no holder: the page draws all of them, and a partition between two
// holders shows as a gap. Otherwise it returns none.
func partitionLeases(locks []LockView) (parts []PartitionLease, others []LockView) {
	parts, others = []PartitionLease{}, []LockView{}
	held := map[int]PartitionLease{}
	for _, l := range locks {
		// The coordinator's lock is the partition's name in payments'
		// namespace ("payments:payments-partition-3"; see
		// services/payments/coordinator.LockName), or the bare name.
		n, ok := customer.PartitionNumber(strings.TrimPrefix(l.Name, "payments:"))
		if !ok {
			others = append(others, l)
			continue
		}
		pl := PartitionLease{Partition: n, Waiters: l.Waiters}
		if h := l.Holder; h != nil {
			pl.Holder, pl.Token, pl.TTLMS, pl.RemainingMS = h.Owner, h.Token, h.TTLMS, h.RemainingMS
		}
		held[n] = pl
	}
	if len(held) == 0 {
		return parts, others
	}
	for n := range customer.Partitions {
		pl, ok := held[n]
		if !ok {
			pl = PartitionLease{Partition: n}
		}
		parts = append(parts, pl)
	}
	return parts, others
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// ringViews draws each service's ring and remembers it, to tell which slots
// moved when the membership changes. Called without c.mu held.
func (c *Console) ringViews(members []Membership) []RingView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := []RingView{}
	for _, m := range members {
		rv := RingView{Service: m.Service, Version: m.Version, Members: []RingMember{}, Owners: []int{}, Moved: []int{}}
		s := m.Ring
		if s == nil {
			out = append(out, rv)
			continue
		}
		addrs := map[string]string{}
		for _, inst := range m.Instances {
			addrs[inst.Name] = inst.Addr
		}
		index := map[string]int{}
		for i, mb := range s.Members() {
			index[mb.Name] = i
			rv.Members = append(rv.Members, RingMember{Name: mb.Name, Addr: addrs[mb.Name]})
		}
		rv.Owners = make([]int, s.SlotCount())
		for slot := range rv.Owners {
			name, _ := s.SlotOwner(slot)
			rv.Owners[slot] = index[name]
			rv.Members[index[name]].Slots++
		}
		rv.Fingerprint = fmt.Sprintf("%016x", s.Fingerprint())
		prev := c.rings[m.Service]
		if prev != nil && prev.Fingerprint() != s.Fingerprint() {
			moved := RingView{MovedAt: time.Now(), Moved: []int{}}
			h := ring.Diff(prev, s)
			seen := map[int]bool{}
			for _, mv := range h.Moves {
				for slot := mv.First; slot <= mv.Last; slot++ {
					// Diff numbers slots in the larger table; the page draws
					// the current one, where slot s holds the keys of s&mask.
					if cur := slot & (s.SlotCount() - 1); !seen[cur] {
						seen[cur] = true
						moved.Moved = append(moved.Moved, cur)
					}
				}
			}
			slices.Sort(moved.Moved)
			c.moved[m.Service] = moved
		}
		c.rings[m.Service] = s
		if mv, ok := c.moved[m.Service]; ok && time.Since(mv.MovedAt) < movedFor {
			rv.Moved, rv.MovedAt = mv.Moved, mv.MovedAt
		}
		out = append(out, rv)
	}
	return out
}

// records turns the orders and payments read into the view's newest-first
// lists, extending each one's timeline with a state not seen before. Called
// with c.mu held.
func (c *Console) records(ords []Order, pays []Payment, staleOrders, stalePayments map[string]bool) (orders, payments []Record) {
	now := time.Now()
	keep := map[string][]Transition{}
	track := func(r Record, created time.Time) Record {
		tl := c.timelines[r.ID]
		if len(tl) == 0 {
			tl = []Transition{{Status: "created", At: created}}
		}
		if tl[len(tl)-1].Status != r.Status {
			tl = append(tl, Transition{Status: r.Status, At: now})
		}
		keep[r.ID] = tl
		r.Timeline = tl
		return r
	}
	slices.SortFunc(ords, func(a, b Order) int { return b.CreatedAt.Compare(a.CreatedAt) })
	ords = slices.CompactFunc(ords, func(a, b Order) bool { return a.ID == b.ID })
	slices.SortFunc(pays, func(a, b Payment) int { return b.CreatedAt.Compare(a.CreatedAt) })
	pays = slices.CompactFunc(pays, func(a, b Payment) bool { return a.ID == b.ID })
	orders, payments = []Record{}, []Record{}
	for _, o := range ords[:min(len(ords), perList)] {
		orders = append(orders, track(Record{ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, Amount: o.Total,
			Currency: o.Currency, Link: o.PaymentID, TraceID: c.traces[o.ID], Stale: staleOrders[o.CustomerID]}, o.CreatedAt))
	}
	for _, p := range pays[:min(len(pays), perList)] {
		payments = append(payments, track(Record{ID: p.ID, CustomerID: p.CustomerID, Status: p.Status, Amount: p.Amount,
			Currency: p.Currency, Link: p.OrderID, TraceID: c.traces[p.OrderID], Stale: stalePayments[p.CustomerID]}, p.CreatedAt))
	}
	c.timelines = keep
	return orders, payments
}

// withReleased adds to the held locks the ones seen held within
// releasedFor and not held now, marked released. Called with c.mu held.
func (c *Console) withReleased(held []LockView) []LockView {
	now := time.Now()
	out := slices.Clone(held)
	for _, l := range held {
		c.locksSeen[l.Name] = seenLock{lock: l, at: now}
	}
	for name, s := range c.locksSeen {
		if now.Sub(s.at) > releasedFor {
			delete(c.locksSeen, name)
			continue
		}
		if !slices.ContainsFunc(held, func(l LockView) bool { return l.Name == name }) {
			l := s.lock
			l.Released, l.Waiters = true, 0
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b LockView) int {
		if a.Released != b.Released {
			if a.Released {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.Name, b.Name)
	})
	if len(out) > maxLocks {
		out = out[:maxLocks]
	}
	return out
}
