package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/otlpsink"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/orders"
	"github.com/payonce/payonce/services/payments"
)

// fullStack is the whole topology as real processes: 3 coordinators, the
// bank, payments and orders instances, on real Postgres and NATS, every
// process exporting its spans to an in-test OTLP sink.
type fullStack struct {
	coord    *coordinators
	bank     *bankSim
	payments *serviceGroup
	orders   *serviceGroup
	sink     *otlpsink.Sink
	natsURL  string
}

func startFullStack(t *testing.T, nOrders, nPayments int) *fullStack {
	t.Helper()
	sink := otlpsink.New()
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close)
	otel := otelEnv(sinkSrv.URL)
	s := &fullStack{sink: sink, natsURL: testenv.NATS(t)}
	s.coord = startCoordinators(t, otel...)
	s.bank = startBank(t, otel...)
	s.payments = newPaymentsService(t, s.coord, s.bank, s.natsURL, otel...)
	s.orders = newOrdersService(t, s.coord, s.natsURL, otel...)
	for range nPayments {
		s.payments.start()
	}
	for range nOrders {
		s.orders.start()
	}
	// Wait until every instance sees every other on its ring.
	for _, g := range []*serviceGroup{s.orders, s.payments} {
		s.waitMembers(t, g.name, g.instances)
	}
	return s
}

// members returns the instances the coordinator lists for service.
func (s *fullStack) members(t *testing.T, service string) []string {
	t.Helper()
	r := call("GET", s.coord.urls[0]+"/v1/services/"+service+"/members", "", "", nil)
	if r.Status != 200 {
		return nil
	}
	var v struct {
		Members []struct {
			Instance string `json:"instance"`
		} `json:"members"`
	}
	r.decode(t, &v)
	var out []string
	for _, m := range v.Members {
		out = append(out, m.Instance)
	}
	sort.Strings(out)
	return out
}

func (s *fullStack) waitMembers(t *testing.T, service string, n int) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%d %s members", n, service), func() bool {
		return len(s.members(t, service)) == n
	})
}

type orderBody struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Total      int64  `json:"total"`
	Currency   string `json:"currency"`
	Status     string `json:"status"`
	PaymentID  string `json:"payment_id"`
	Lines      []struct {
		SKU       string `json:"sku"`
		UnitPrice int64  `json:"unit_price"`
	} `json:"lines"`
}

func newOrder(customer string) map[string]any {
	return map[string]any{
		"customer_id": customer, "currency": "EUR", "card": "4242424242424242",
		"lines": []map[string]any{{"sku": "espresso", "quantity": 2}, {"sku": "cup", "quantity": 1}},
	}
}

const newOrderTotal = 2*2450 + 1200

func (s *fullStack) order(t *testing.T, id string) orderBody {
	t.Helper()
	r := call("GET", s.orders.urls[0]+"/v1/orders/"+id, testAPIKey, "", nil)
	var o orderBody
	if r.Status == 200 {
		r.decode(t, &o)
	}
	return o
}

func (s *fullStack) waitOrderStatus(t *testing.T, id, status string) orderBody {
	t.Helper()
	var o orderBody
	eventually(t, 30*time.Second, "order "+id+" to be "+status, func() bool {
		o = s.order(t, id)
		return o.Status == status
	})
	return o
}

// TestOrderToPaymentIsOneTrace: an order is created, paid over NATS and
// marked paid, and the spans every process exported form one trace that
// covers each hop.
func TestOrderToPaymentIsOneTrace(t *testing.T) {
	s := startFullStack(t, 1, 1)
	r := call("POST", s.orders.urls[0]+"/v1/orders", testAPIKey, "trace-1", newOrder("cust-trace"))
	if r.Status != 201 {
		t.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var o orderBody
	r.decode(t, &o)
	if o.Total != newOrderTotal || o.Status != "pending_payment" || o.Lines[0].UnitPrice != 2450 {
		t.Fatalf("order %+v", o)
	}
	paid := s.waitOrderStatus(t, o.ID, "paid")
	if paid.PaymentID != payments.PaymentIDForOrder(o.ID) {
		t.Fatalf("order paid by %q, want the order's payment %q", paid.PaymentID, payments.PaymentIDForOrder(o.ID))
	}

	// Find the trace of the POST and wait until it holds the order update.
	var traceID string
	want := []struct{ service, name string }{
		{"orders", "POST /v1/orders"},
		{"orders", "SQL INSERT"},
		{"orders", "outbox relay orders.created"},
		{"orders", "publish orders.created"},
		{"payments", "process orders.created"},
		{"payments", "payments.settle"},
		{"payments", "bank POST /v1/authorizations"},
		{"bank", "POST /v1/authorizations"},
		{"payments", "publish payments.succeeded"},
		{"orders", "process payments.succeeded"},
		{"orders", "orders.apply_payment_outcome"},
		{"orders", "SQL UPDATE"},
	}
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, sp := range s.sink.Spans() {
			if sp.Service == "orders" && sp.Name == "POST /v1/orders" {
				traceID = sp.TraceID
			}
		}
		spans := s.sink.Trace(traceID)
		missing = missing[:0]
		for _, w := range want {
			found := false
			for _, sp := range spans {
				if sp.Service == w.service && (w.name == "" || strings.HasPrefix(sp.Name, w.name)) {
					found = true
					break
				}
			}
			if !found {
				missing = append(missing, w.service+": "+w.name)
			}
		}
		if traceID != "" && len(missing) == 0 {
			t.Logf("trace %s, %d spans:\n%s", traceID, len(spans), otlpsink.Tree(spans))
			// The partition design (the default, ADR 0070): the lease
			// check is local and shows as attributes of the settle span,
			// not as a hop to the coordinator.
			for _, sp := range spans {
				if sp.Service == "coordinator" || strings.HasPrefix(sp.Name, "lock.") {
					t.Fatalf("a payment's trace has %s: %s; the partition design makes no coordinator call per payment", sp.Service, sp.Name)
				}
				if sp.Name == "payments.settle" && (sp.Attributes["partition"] == "" || sp.Attributes["partition.token"] == "") {
					t.Fatalf("payments.settle lacks the partition lease check's attributes: %v", sp.Attributes)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			names := map[string]int{}
			for _, sp := range s.sink.Spans() {
				names[sp.Service+": "+sp.Name]++
			}
			t.Fatalf("trace %q lacks %v; it has:\n%s\nall spans received: %v", traceID, missing, otlpsink.Tree(spans), names)
		}
		select {
		case <-s.sink.Received():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestCustomersArePartitionedOnTheRing: requests for 100 customers are
// served by the instance the ring names, whichever instance they are sent
// to; a request sent to a non-owner is forwarded once and succeeds once.
func TestCustomersArePartitionedOnTheRing(t *testing.T) {
	s := startFullStack(t, 2, 1)
	// The owner is whatever the coordinator's ring table says: instances
	// install that table (advanced by Rebalance in the coordinator's log),
	// so a ring built here from the member list need not match it.
	var table struct {
		Ring            []byte `json:"ring"`
		RingFingerprint string `json:"ring_fingerprint"`
	}
	call("GET", s.coord.urls[0]+"/v1/services/orders/members", "", "", nil).decode(t, &table)
	snap, err := ring.Decode(table.Ring)
	if err != nil {
		t.Fatalf("the coordinator serves no decodable orders ring: %v", err)
	}
	if got := fmt.Sprintf("%016x", snap.Fingerprint()); got != table.RingFingerprint || snap.Len() != 2 {
		t.Fatalf("orders ring: fingerprint %s (served %s), %d members", got, table.RingFingerprint, snap.Len())
	}
	servedBy := map[string]int{}
	forwarded := 0
	for i := range 100 {
		customer := fmt.Sprintf("cust-%03d", i)
		// Customers are per caller: the ring key is the caller's customer.
		owner, _ := snap.Owner(orders.CustomerKey("shop", customer))
		target := i % 2 // alternate entry points
		r := call("POST", s.orders.urls[target]+"/v1/orders", testAPIKey, "ring-"+customer, newOrder(customer))
		if r.Status != 201 {
			t.Fatalf("%s: %d %s", customer, r.Status, r.Body)
		}
		got := r.Header.Get("Payonce-Instance")
		if got != owner {
			t.Fatalf("%s served by %q, the ring says %q", customer, got, owner)
		}
		servedBy[got]++
		if fmt.Sprintf("orders-%d", target+1) != owner {
			forwarded++
		}
		// Listing the customer's orders is routed the same way.
		l := call("GET", s.orders.urls[1-target]+"/v1/customers/"+customer+"/orders", testAPIKey, "", nil)
		if l.Status != 200 || l.Header.Get("Payonce-Instance") != owner {
			t.Fatalf("list %s: %d served by %q, want %q", customer, l.Status, l.Header.Get("Payonce-Instance"), owner)
		}
		var list struct {
			Orders []orderBody `json:"orders"`
		}
		l.decode(t, &list)
		if len(list.Orders) != 1 {
			t.Fatalf("%s has %d orders, want exactly 1 (forwarding must not duplicate)", customer, len(list.Orders))
		}
	}
	t.Logf("served by %v; %d of 100 creates were forwarded", servedBy, forwarded)
	if len(servedBy) != 2 || forwarded == 0 {
		t.Fatalf("customers not spread over both instances: %v (forwarded %d)", servedBy, forwarded)
	}
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders`); got != 100 {
		t.Fatalf("%d orders, want 100", got)
	}
}

// TestKillInstancesUnderLoad SIGKILLs one orders and one payments instance
// while clients keep creating orders (retrying with the same key on
// errors, as clients should). Every order is accepted once, every order
// reaches a final state, no order is charged twice, and membership settles
// on the survivors.
func TestKillInstancesUnderLoad(t *testing.T) {
	s := startFullStack(t, 2, 2)
	const clients, perClient = 4, 25
	var accepted sync.Map // key -> order id
	var created atomic.Int64
	killAt := int64(clients * perClient / 3)
	killed := make(chan struct{})
	var killOnce sync.Once
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				key := fmt.Sprintf("load-%d-%d", c, i)
				customer := fmt.Sprintf("load-cust-%d", (c*perClient+i)%37)
				// A client retries on failure with the same key, against
				// any instance, for a bounded time.
				deadline := time.Now().Add(45 * time.Second)
				for attempt := 0; ; attempt++ {
					url := s.orders.urls[(c+attempt)%len(s.orders.urls)]
					r := call("POST", url+"/v1/orders", testAPIKey, key, newOrder(customer))
					if r.Status == 201 {
						var o orderBody
						_ = json.Unmarshal(r.Body, &o)
						accepted.Store(key, o.ID)
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s never accepted; last %d %v %s", key, r.Status, r.Err, r.Body)
						return
					}
					select {
					case <-time.After(100 * time.Millisecond):
					case <-killed:
					}
				}
				if created.Add(1) == killAt {
					killOnce.Do(func() {
						s.orders.procs[1].Kill()
						s.payments.procs[1].Kill()
						close(killed)
					})
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	select {
	case <-killed:
	default:
		t.Fatal("the load ended before the kill")
	}
	// Membership settles on the survivors within the TTL.
	s.waitMembers(t, "orders", 1)
	s.waitMembers(t, "payments", 1)

	ids := map[string]bool{}
	accepted.Range(func(_, v any) bool { ids[v.(string)] = true; return true })
	if len(ids) != clients*perClient {
		t.Fatalf("%d distinct orders accepted, want %d", len(ids), clients*perClient)
	}
	eventually(t, 60*time.Second, "every order to reach a final state", func() bool {
		return dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders WHERE status = 'pending_payment'`) == 0
	})
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders`); got != clients*perClient {
		t.Fatalf("%d orders in the database, want %d", got, clients*perClient)
	}
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders WHERE status = 'paid'`); got != clients*perClient {
		t.Fatalf("%d orders paid, want all %d", got, clients*perClient)
	}
	captures := s.bank.ledger(t, "capture", "")
	perRef := map[string]int{}
	for _, e := range captures {
		perRef[e.Reference]++
	}
	for ref, n := range perRef {
		if n != 1 {
			t.Fatalf("payment %s captured %d times", ref, n)
		}
	}
	if len(perRef) != clients*perClient {
		t.Fatalf("%d payments captured, want %d", len(perRef), clients*perClient)
	}
}

// TestRedeliveryAndCrashesMoveOrdersOnce: the orders relay dies after
// publishing and before marking, the payments consumer dies before acking,
// and a payment outcome is delivered ten times: one payment, one charge,
// one state change.
func TestRedeliveryAndCrashesMoveOrdersOnce(t *testing.T) {
	sinkless := ""
	coord := startCoordinators(t)
	bank := startBank(t)
	natsURL := testenv.NATS(t)
	pay := newPaymentsService(t, coord, bank, natsURL, otelEnv(sinkless)...)
	ord := newOrdersService(t, coord, natsURL)
	pay.start("PAYONCE_FAILPOINTS=eventbus.before_ack")
	ord.start("PAYONCE_FAILPOINTS=outbox.after_publish")

	// The orders relay publishes orders.created and dies before marking the
	// row; the process may die before it even answers the client.
	_ = call("POST", ord.urls[0]+"/v1/orders", testAPIKey, "crashy-1", newOrder("cust-crashy"))
	for _, p := range []*serviceGroup{ord, pay} {
		// The payments consumer pays and dies before acking.
		select {
		case <-p.procs[0].Done():
		case <-time.After(30 * time.Second):
			t.Fatalf("%s did not reach its failpoint", p.name)
		}
	}
	ord.restart(0)
	pay.restart(0)
	// The client retries with the same key and gets the one order.
	var r apiResponse
	eventually(t, 30*time.Second, "the client's retry to get the order", func() bool {
		r = call("POST", ord.urls[0]+"/v1/orders", testAPIKey, "crashy-1", newOrder("cust-crashy"))
		return r.Status == 201
	})
	var o orderBody
	r.decode(t, &o)
	if got := dbCount(t, ord.dbURL, `SELECT count(*) FROM orders`); got != 1 {
		t.Fatalf("%d orders, want 1", got)
	}
	eventually(t, 30*time.Second, "the order to be paid", func() bool {
		return dbCount(t, ord.dbURL, `SELECT count(*) FROM orders WHERE id = $1 AND status = 'paid'`, o.ID) == 1
	})
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM payments`); got != 1 {
		t.Fatalf("%d payments, want 1", got)
	}
	if got := len(bank.ledger(t, "capture", "")); got != 1 {
		t.Fatalf("%d captures, want 1", got)
	}

	// The payment outcome, delivered ten more times past JetStream's
	// de-duplication, changes nothing.
	var updatedAt time.Time
	readUpdated := func() time.Time {
		var at time.Time
		conn := dbConn(t, ord.dbURL)
		defer conn.Close(context.Background())
		if err := conn.QueryRow(context.Background(), `SELECT updated_at FROM orders WHERE id = $1`, o.ID).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	updatedAt = readUpdated()
	js := jetStream(t, natsURL)
	ev := testSeal.SealPaymentOutcome(events.PaymentOutcomeEvent{EventID: "replayed-outcome-of-" + o.ID, PaymentID: payments.PaymentIDForOrder(o.ID), OrderID: o.ID,
		Caller: "shop", CustomerID: "cust-crashy", Amount: o.Total, Currency: "EUR", Status: "failed", FailureReason: "a late, contradicting duplicate"})
	publishCopies(t, js, events.PaymentFailed, ev, "dup", 10)
	eventually(t, 30*time.Second, "the ten deliveries to be recorded", func() bool {
		return dbCount(t, ord.dbURL, `SELECT count(*) FROM inbox WHERE message_id = $1`, ev.EventID) == 1 && consumerDone(t, js, "PAYMENTS", "orders-payment-outcomes")
	})
	if got := ord.orderStatus(t, o.ID); got != "paid" {
		t.Fatalf("order is %s after the duplicates, want paid", got)
	}
	if !readUpdated().Equal(updatedAt) {
		t.Fatal("the duplicates touched the order")
	}
}

// jetStream connects to the test's NATS server for the rest of the test.
func jetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishCopies publishes ev on subject n times, each copy with its own
// Nats-Msg-Id (idPrefix-0, idPrefix-1, ...), so JetStream's de-duplication
// lets every copy through and only the consumer can drop them.
func publishCopies(t *testing.T, js jetstream.JetStream, subject string, ev any, idPrefix string, n int) {
	t.Helper()
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		msg := nats.NewMsg(subject)
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", idPrefix, i))
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

func consumerDone(t *testing.T, js jetstream.JetStream, stream, durable string) bool {
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	c, err := s.Consumer(ctx, durable)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func (s *serviceGroup) orderStatus(t *testing.T, id string) string {
	r := call("GET", s.urls[0]+"/v1/orders/"+id, testAPIKey, "", nil)
	var o orderBody
	if r.Status == 200 {
		r.decode(t, &o)
	}
	return o.Status
}

// TestOrdersRefuseIllegalMovesAndBadInput: illegal transitions and bad
// input get problem+json and change nothing.
func TestOrdersRefuseIllegalMovesAndBadInput(t *testing.T) {
	s := startFullStack(t, 1, 1)
	base := s.orders.urls[0]
	cases := []struct {
		name    string
		body    any
		status  int
		problem string
	}{
		{"client-supplied total", `{"customer_id":"c","currency":"EUR","card":"4242424242424242","total":1,"lines":[{"sku":"cup","quantity":1}]}`, 400, "malformed-json"},
		{"client-supplied price", `{"customer_id":"c","currency":"EUR","card":"4242424242424242","lines":[{"sku":"cup","quantity":1,"unit_price":1}]}`, 400, "malformed-json"},
		{"unknown sku", map[string]any{"customer_id": "c", "currency": "EUR", "card": "4242424242424242", "lines": []map[string]any{{"sku": "unicorn", "quantity": 1}}}, 400, "invalid"},
		{"zero quantity", map[string]any{"customer_id": "c", "currency": "EUR", "card": "4242424242424242", "lines": []map[string]any{{"sku": "cup", "quantity": 0}}}, 400, "invalid"},
		{"float quantity", `{"customer_id":"c","currency":"EUR","card":"4242424242424242","lines":[{"sku":"cup","quantity":1.5}]}`, 400, "malformed-json"},
		{"unknown currency", map[string]any{"customer_id": "c", "currency": "EURO", "card": "4242424242424242", "lines": []map[string]any{{"sku": "cup", "quantity": 1}}}, 400, "invalid"},
		{"no lines", map[string]any{"customer_id": "c", "currency": "EUR", "card": "4242424242424242", "lines": []any{}}, 400, "invalid"},
		{"malformed", `{"customer_id":`, 400, "malformed-json"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertProblem(t, call("POST", base+"/v1/orders", testAPIKey, fmt.Sprintf("bad-%d", i), tc.body), tc.status, tc.problem)
		})
	}
	assertProblem(t, call("POST", base+"/v1/orders", testAPIKey, "", newOrder("c")), 400, "idempotency-key-missing")
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders`); got != 0 {
		t.Fatalf("bad input wrote %d orders", got)
	}
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM outbox`); got != 0 {
		t.Fatalf("bad input wrote %d events", got)
	}

	// A paid order cannot be cancelled.
	r := call("POST", base+"/v1/orders", testAPIKey, "legal-1", newOrder("cust-legal"))
	var o orderBody
	r.decode(t, &o)
	s.waitOrderStatus(t, o.ID, "paid")
	assertProblem(t, call("POST", base+"/v1/orders/"+o.ID+"/cancel", testAPIKey, "cancel-1", nil), 409, "illegal-transition")
	if got := s.order(t, o.ID).Status; got != "paid" {
		t.Fatalf("refused cancel changed the order to %s", got)
	}
	assertProblem(t, call("POST", base+"/v1/orders/00000000-0000-0000-0000-000000000000/cancel", testAPIKey, "cancel-2", nil), 404, "not-found")
	assertProblem(t, call("GET", base+"/v1/orders/nope", testAPIKey, "", nil), 404, "not-found")
	_ = orders.PendingPayment
}

// TestPaymentForACancelledOrderIsRefunded: the customer cancels while the
// bank is still charging. The charge succeeds; the order stays cancelled,
// orders asks for a refund (once, with the inbox row of the outcome) and
// payments refunds the capture in full, once, even when the request is
// delivered again.
func TestPaymentForACancelledOrderIsRefunded(t *testing.T) {
	s := startFullStack(t, 1, 1)
	s.bank.setFaults(t, map[string]any{"latency_ms": 1500})
	r := call("POST", s.orders.urls[0]+"/v1/orders", testAPIKey, "cancel-race-1", newOrder("cust-cancel-race"))
	if r.Status != 201 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o orderBody
	r.decode(t, &o)
	// The charge is in flight: the payment is recorded, the bank is slow.
	eventually(t, 30*time.Second, "the charge to be in flight", func() bool {
		return dbCount(t, s.payments.dbURL, `SELECT count(*) FROM payments WHERE order_id = $1 AND status IN ('pending', 'authorizing')`, o.ID) == 1
	})
	if r := call("POST", s.orders.urls[0]+"/v1/orders/"+o.ID+"/cancel", testAPIKey, "cancel-race-cancel", nil); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	s.bank.setFaults(t, map[string]any{})

	paymentID := payments.PaymentIDForOrder(o.ID)
	eventually(t, 30*time.Second, "the capture to be refunded in full", func() bool {
		return dbCount(t, s.payments.dbURL, `SELECT count(*) FROM refunds WHERE payment_id = $1 AND status = 'succeeded' AND amount = $2`, paymentID, o.Total) == 1
	})
	if got := s.order(t, o.ID).Status; got != "cancelled" {
		t.Fatalf("order is %s, want cancelled", got)
	}
	if got := dbCount(t, s.payments.dbURL, `SELECT count(*) FROM payments WHERE id = $1 AND refunded_amount = amount`, paymentID); got != 1 {
		t.Fatal("the payment does not show the full refund")
	}
	if got := dbCount(t, s.orders.dbURL, `SELECT count(*) FROM outbox WHERE subject = 'orders.refund_requested'`); got != 1 {
		t.Fatalf("%d refund requests written, want 1", got)
	}

	// The refund request, delivered three more times past JetStream's
	// de-duplication, refunds nothing more.
	js := jetStream(t, s.natsURL)
	publishCopies(t, js, events.OrderRefundRequested, testSeal.SealRefundRequested(events.RefundRequestedEvent{EventID: "replayed-refund-of-" + o.ID, OrderID: o.ID, PaymentID: paymentID,
		Caller: "shop", CustomerID: "cust-cancel-race", Amount: o.Total, Currency: "EUR", Reason: "a duplicate"}), "dup-refund", 3)
	eventually(t, 30*time.Second, "the duplicates to be consumed", func() bool {
		return consumerDone(t, js, "ORDERS", "payments-orders-refunds")
	})
	captures, refunds := 0, 0
	for _, e := range s.bank.ledger(t, "", "") {
		switch e.Kind {
		case "capture":
			captures++
		case "refund":
			refunds++
			if e.Amount != o.Total {
				t.Fatalf("refund of %d, want %d", e.Amount, o.Total)
			}
		}
	}
	if captures != 1 || refunds != 1 {
		t.Fatalf("bank ledger: %d captures and %d refunds, want 1 and 1", captures, refunds)
	}

	// A refund request that does not name its order's payment is refused
	// (terminated, not retried) and refunds nothing.
	publishCopies(t, js, events.OrderRefundRequested, testSeal.SealRefundRequested(events.RefundRequestedEvent{EventID: "bad-refund", OrderID: o.ID,
		PaymentID: "00000000-0000-0000-0000-000000000000", Caller: "shop", Amount: o.Total}), "bad-refund", 1)
	eventually(t, 30*time.Second, "the bad request to be consumed", func() bool {
		return consumerDone(t, js, "ORDERS", "payments-orders-refunds")
	})
	if got := len(s.bank.ledger(t, "refund", "")); got != 1 {
		t.Fatalf("%d refunds after a bad request, want 1", got)
	}
}
