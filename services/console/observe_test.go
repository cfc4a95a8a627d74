package console

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/orders"
	"github.com/payonce/payonce/services/payments"
)

// stubStack answers the console's reads from fields a test sets; the storm
// path counts its create requests.
type stubStack struct {
	mu       sync.Mutex
	members  map[string][]string
	snapshot map[string]*ring.Snapshot
	nodes    map[string]NodeStatus
	creates  int
	// orders are every customer's orders; ordersDown makes reading them fail.
	orders     []Order
	ordersDown bool
	fences     map[string]*FenceRefusals // by instance
}

func (s *stubStack) CoordinatorURLs() []string { return []string{"c1", "c2", "c3"} }
func (s *stubStack) NodeStatus(_ context.Context, u string) (NodeStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.nodes[u]
	if !ok {
		return st, context.DeadlineExceeded
	}
	return st, nil
}
func (s *stubStack) Membership(_ context.Context, svc string) (Membership, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := Membership{Service: svc, Ring: s.snapshot[svc]}
	for _, n := range s.members[svc] {
		m.Instances = append(m.Instances, Instance{Name: n, Addr: "http://" + n})
	}
	return m, nil
}
func (s *stubStack) Metrics(_ context.Context, inst Instance) (InstanceMetrics, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return InstanceMetrics{Idempotency: IdempotencyCounts{Instance: inst.Name}, Fence: s.fences[inst.Name]}, nil
}
func (s *stubStack) CustomerOrders(_ context.Context, _, customerID string) ([]Order, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ordersDown {
		return nil, errors.New("503 Service Unavailable: database unavailable")
	}
	var out []Order
	for _, o := range s.orders {
		if o.CustomerID == customerID {
			out = append(out, o)
		}
	}
	return out, nil
}
func (s *stubStack) CustomerPayments(context.Context, string, string) ([]Payment, error) {
	return nil, nil
}
func (s *stubStack) CreateOrder(context.Context, string, string, string, []byte) (OrderReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creates++
	a := AnswerReplayed
	if s.creates == 1 {
		a = AnswerFirst
	}
	return OrderReply{Answer: a, Order: Order{ID: "o1"}}, nil
}
func (s *stubStack) GetOrder(context.Context, string, string) (Order, error) {
	return Order{ID: "o1", Status: "paid", PaymentID: "p1"}, nil
}
func (s *stubStack) BankFaults(context.Context) (BankFaults, error)    { return BankFaults{}, nil }
func (s *stubStack) SetBankFaults(context.Context, BankFaults) error   { return nil }
func (s *stubStack) BankCaptures(context.Context, string) (int, error) { return 1, nil }
func (s *stubStack) Trace(context.Context, string) ([]byte, error)     { return nil, ErrNoTraces }

func (s *stubStack) setMembers(t *testing.T, svc string, names ...string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var ms []ring.Member
	for _, n := range names {
		ms = append(ms, ring.Member{Name: n})
	}
	next, err := ring.Rebalance(s.snapshot[svc], ms)
	if err != nil {
		t.Fatal(err)
	}
	s.snapshot[svc], s.members[svc] = next, names
}

// TestRingViewMarksExactlyTheSlotsThatMoved: when an instance leaves, the
// view's Moved lists exactly the slots whose owner changed (pkg/ring's Diff,
// the same table the services use), every slot has an owner, and a lookup
// agrees with the ring.
func TestRingViewMarksExactlyTheSlotsThatMoved(t *testing.T) {
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}, nodes: map[string]NodeStatus{
		"c1": {ID: "c1", State: "Leader", LeaderID: "c1"}, "c2": {ID: "c2", State: "Follower", LeaderID: "c1"},
	}}
	s.setMembers(t, "payments", "payments-1", "payments-2", "payments-3")
	s.setMembers(t, "orders", "orders-1")
	c := New(Config{Stack: s})
	ctx := context.Background()
	v := c.Refresh(ctx)
	if v.LeaderID != "c1" || len(v.Rings) != 2 || len(v.Rings[1].Moved) != 0 || len(v.Problems) != 1 {
		t.Fatalf("first view: leader %q, rings %d, problems %v", v.LeaderID, len(v.Rings), v.Problems)
	}
	before := s.snapshot["payments"]
	s.setMembers(t, "payments", "payments-1", "payments-3")
	v = c.Refresh(ctx)
	pay := v.Rings[1]
	if pay.Service != "payments" || len(pay.Members) != 2 {
		t.Fatalf("payments ring %+v", pay.Members)
	}
	var want []int
	for slot := range before.SlotCount() {
		was, _ := before.SlotOwner(slot)
		if was == "payments-2" {
			want = append(want, slot)
		}
	}
	if !slices.Equal(pay.Moved, want) || len(want) == 0 {
		t.Fatalf("moved %d slots, want the %d payments-2 owned", len(pay.Moved), len(want))
	}
	total := 0
	for _, m := range pay.Members {
		total += m.Slots
	}
	if total != len(pay.Owners) {
		t.Fatalf("members own %d slots of %d", total, len(pay.Owners))
	}
	ps, err := c.Lookup("alice")
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := s.snapshot["payments"].Owner(payments.CustomerPartitionName(DemoCaller, "alice"))
	if len(ps) != 2 || ps[1].Owner != owner || ps[1].Successors[0] != owner || len(ps[1].Successors) != 2 {
		t.Fatalf("lookup %+v, want owner %s", ps, owner)
	}
	if _, err := c.Lookup("<bad>"); err == nil {
		t.Fatal("a bad customer id was looked up")
	}
}

// TestStormCountsEveryAnswer runs a storm against the stub: every request
// is counted once, one order comes back, and the result is settled.
func TestStormCountsEveryAnswer(t *testing.T) {
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}}
	s.setMembers(t, "orders", "orders-1", "orders-2")
	c := New(Config{Stack: s, DevMode: true})
	res, err := c.StartStorm(context.Background(), StormRequest{Requests: 30, CustomerID: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	views, stop := c.Subscribe()
	defer stop()
	deadline := time.Now().Add(time.Minute)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the storm did not finish within a minute: %+v", c.View().Storms)
		}
		c.Refresh(context.Background())
		v := <-views
		if len(v.Storms) == 1 && v.Storms[0].Done {
			got := v.Storms[0]
			if got.ID != res.ID || got.Orders != 1 || got.Answers.First != 1 || got.Answers.Replayed != 29 ||
				got.Charges != 1 || got.OrderStatus != "paid" || len(v.Keys) != 1 || v.Keys[0].Key != res.Key {
				t.Fatalf("storm %+v keys %+v", got, v.Keys)
			}
			return
		}
	}
}

// TestRecordsStayWhileTheirServiceIsDown: while the orders service cannot
// read its database, the page keeps the order as it was last read, marked
// stale (so the learner watches it wait), and when it answers again the
// order moves on with its timeline intact.
func TestRecordsStayWhileTheirServiceIsDown(t *testing.T) {
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}}
	s.setMembers(t, "orders", "orders-1")
	s.setMembers(t, "payments", "payments-1")
	s.orders = []Order{{ID: "o1", CustomerID: "alice", Status: "pending_payment", CreatedAt: time.Now()}}
	c := New(Config{Stack: s, Customers: []string{"alice"}})
	ctx := context.Background()
	if v := c.Refresh(ctx); len(v.Orders) != 1 || v.Orders[0].Stale {
		t.Fatalf("first view: %+v", v.Orders)
	}
	s.mu.Lock()
	s.ordersDown = true
	s.mu.Unlock()
	v := c.Refresh(ctx)
	if len(v.Orders) != 1 || !v.Orders[0].Stale || v.Orders[0].Status != "pending_payment" || len(v.Problems) == 0 {
		t.Fatalf("orders down: orders %+v, problems %v; want the last one read, marked stale", v.Orders, v.Problems)
	}
	s.mu.Lock()
	s.ordersDown = false
	s.orders[0].Status = "paid"
	s.mu.Unlock()
	v = c.Refresh(ctx)
	if len(v.Orders) != 1 || v.Orders[0].Stale || v.Orders[0].Status != "paid" {
		t.Fatalf("orders back: %+v", v.Orders)
	}
	var seen []string
	for _, tr := range v.Orders[0].Timeline {
		seen = append(seen, tr.Status)
	}
	if !slices.Equal(seen, []string{"created", "pending_payment", "paid"}) {
		t.Fatalf("timeline %v, want created, pending_payment, paid", seen)
	}
}

// TestFenceRefusalsAreShownLastFirst: the payments instances that report
// fence refusals appear in the view, the latest refusal first; one that
// reports none (or no fence metrics at all) does not.
func TestFenceRefusalsAreShownLastFirst(t *testing.T) {
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}}
	s.setMembers(t, "orders", "orders-1")
	s.setMembers(t, "payments", "payments-1", "payments-2", "payments-3")
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	s.fences = map[string]*FenceRefusals{
		"payments-1": {Refused: 1, LastAt: at, LastToken: 12, FenceToken: 15},
		"payments-2": {Refused: 3, LastAt: at.Add(time.Minute), LastToken: 41, FenceToken: 57},
		"payments-3": {},
	}
	v := New(Config{Stack: s}).Refresh(context.Background())
	if len(v.FenceRefusals) != 2 || v.FenceRefusals[0].Instance != "payments-2" || v.FenceRefusals[0].LastToken != 41 ||
		v.FenceRefusals[0].FenceToken != 57 || v.FenceRefusals[1].Instance != "payments-1" {
		t.Fatalf("fence refusals %+v", v.FenceRefusals)
	}
}

// partitionLocks are the locks the coordinator's leader holds for the
// payments partitions, each in payments' namespace, held by holderOf(p)
// with token 1000+p: what GET /v1/cluster/node lists under ADR 0070.
func partitionLocks(holderOf func(p int) string) []LockView {
	var locks []LockView
	for p := range payments.Partitions {
		if h := holderOf(p); h != "" {
			locks = append(locks, LockView{Name: "payments:" + payments.PartitionName(p),
				Holder: &LockHolder{Owner: h, Token: uint64(1000 + p), TTLMS: 6000, RemainingMS: int64(6000 - 10*p)}})
		}
	}
	return locks
}

// TestLookupNamesTheInstanceThatServesTheCallersCustomer: for many
// customer ids, the lookup's owner is the owner the services compute for
// the console's caller's customer, with the services' own functions on the
// same ring: orders places orders.CustomerKey(caller, id), payments the
// partition payments.CustomerPartitionName(caller, id). The payments
// placement names that partition and its lease as the coordinator shows
// it. The test also checks that placing the bare id (the console's old
// lookup) would name another owner for some of these ids, so it can fail.
func TestLookupNamesTheInstanceThatServesTheCallersCustomer(t *testing.T) {
	const caller = "demo"
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}, nodes: map[string]NodeStatus{
		"c1": {ID: "c1", State: "Leader", LeaderID: "c1", Locks: partitionLocks(func(p int) string {
			return "payments/payments-" + strconv.Itoa(1+p%2)
		})},
	}}
	s.setMembers(t, "orders", "orders-1", "orders-2")
	s.setMembers(t, "payments", "payments-1", "payments-2")
	c := New(Config{Stack: s, Caller: caller})
	c.Refresh(context.Background())

	bareDiffers := 0
	for i := range 40 {
		id := "cust-" + strconv.Itoa(i)
		if i == 0 {
			id = "alice"
		}
		ps, err := c.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 || ps[0].Service != "orders" || ps[1].Service != "payments" {
			t.Fatalf("lookup %s: %+v", id, ps)
		}
		ordersKey := orders.CustomerKey(caller, id)
		wantOrders, _ := s.snapshot["orders"].Owner(ordersKey)
		if o := ps[0]; o.Key != ordersKey || o.Owner != wantOrders || o.Successors[0] != wantOrders || o.Slot != s.snapshot["orders"].Slot(ordersKey) {
			t.Fatalf("orders placement of %s: %+v, want key %s owned by %s", id, o, ordersKey, wantOrders)
		}
		partition := payments.CustomerPartitionName(caller, id)
		wantPayments, _ := s.snapshot["payments"].Owner(partition)
		p := ps[1]
		if p.Key != partition || p.Owner != wantPayments || p.Successors[0] != wantPayments || p.Partition == nil ||
			payments.PartitionName(*p.Partition) != partition {
			t.Fatalf("payments placement of %s: %+v, want partition %s owned by %s", id, p, partition, wantPayments)
		}
		n := *p.Partition
		if p.Lease == nil || p.Lease.Holder != "payments/payments-"+strconv.Itoa(1+n%2) || p.Lease.Token != uint64(1000+n) {
			t.Fatalf("payments placement of %s: lease %+v, want partition %d's", id, p.Lease, n)
		}
		if bare, _ := s.snapshot["orders"].Owner(id); bare != wantOrders {
			bareDiffers++
		}
		if bare, _ := s.snapshot["payments"].Owner(id); bare != wantPayments {
			bareDiffers++
		}
	}
	if bareDiffers == 0 {
		t.Fatal("the bare id has the same owner as the caller's customer for every id: this test could not fail")
	}
}

// TestViewCarriesEveryPartitionLease: with all 64 partitions leased, the
// view carries 64 partition leases, in partition order, each with its
// holder, fencing token and remaining TTL, beside the other locks (which
// keep their own bound of 20); with some partitions free, it still carries
// 64, the free ones without a holder; without partition leases (the
// per-key design), none.
func TestViewCarriesEveryPartitionLease(t *testing.T) {
	holder := func(p int) string { return "payments/payments-" + strconv.Itoa(1+p%3) }
	locks := partitionLocks(holder)
	for i := range 30 {
		locks = append(locks, LockView{Name: "customer:demo:c" + strconv.Itoa(i),
			Holder: &LockHolder{Owner: "payments/payments-1", Token: uint64(5000 + i), TTLMS: 15000, RemainingMS: 9000}})
	}
	s := &stubStack{members: map[string][]string{}, snapshot: map[string]*ring.Snapshot{}, nodes: map[string]NodeStatus{
		"c1": {ID: "c1", State: "Leader", LeaderID: "c1", Locks: locks},
	}}
	s.setMembers(t, "orders", "orders-1")
	s.setMembers(t, "payments", "payments-1", "payments-2", "payments-3")
	c := New(Config{Stack: s})
	v := c.Refresh(context.Background())
	if len(v.Partitions) != payments.Partitions || payments.Partitions != 64 {
		t.Fatalf("view carries %d partition leases, want all %d", len(v.Partitions), payments.Partitions)
	}
	for p, l := range v.Partitions {
		if l.Partition != p || l.Holder != holder(p) || l.Token != uint64(1000+p) || l.TTLMS != 6000 || l.RemainingMS != int64(6000-10*p) {
			t.Fatalf("partition %d: %+v", p, l)
		}
	}
	if len(v.Locks) != maxLocks || !strings.HasPrefix(v.Locks[0].Name, "customer:") {
		t.Fatalf("other locks: %d (want %d customer locks, no partition among them)", len(v.Locks), maxLocks)
	}
	data, err := json.Marshal(v.Partitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 partition leases: %d bytes of JSON per view", len(data))

	// Partitions 0-9 free (their holder was paused past its lease).
	s.mu.Lock()
	s.nodes["c1"] = NodeStatus{ID: "c1", State: "Leader", LeaderID: "c1", Locks: partitionLocks(func(p int) string {
		if p < 10 {
			return ""
		}
		return holder(p)
	})}
	s.mu.Unlock()
	v = c.Refresh(context.Background())
	if len(v.Partitions) != 64 || v.Partitions[3].Holder != "" || v.Partitions[3].Partition != 3 || v.Partitions[10].Holder != holder(10) {
		t.Fatalf("with partitions 0-9 free: %d leases, %+v, %+v", len(v.Partitions), v.Partitions[3], v.Partitions[10])
	}

	s.mu.Lock()
	s.nodes["c1"] = NodeStatus{ID: "c1", State: "Leader", LeaderID: "c1", Locks: locks[64:]}
	s.mu.Unlock()
	if v = c.Refresh(context.Background()); len(v.Partitions) != 0 {
		t.Fatalf("per-key design: %d partition leases, want none", len(v.Partitions))
	}
}
