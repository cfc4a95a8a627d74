package integration

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/services/payments"
)

// rowsOf returns one caller's rows of a table as text, to prove another
// caller's attempts changed nothing (status, amounts, updated_at).
func rowsOf(t *testing.T, dbURL, query, caller string) []string {
	t.Helper()
	ctx := context.Background()
	conn := dbConn(t, dbURL)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, query, caller)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		v, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(v...))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCallersSeeOnlyTheirOwn: two callers on real orders and payments
// instances. Caller B ("other") tries every read and write of caller A's
// ("shop") order, payment and refund: each is 404 (never 403 or 409, which
// would tell B the object exists), and A's rows are unchanged. The same
// customer id under the two callers is two customers: separate lists,
// separate locks and fences.
func TestCallersSeeOnlyTheirOwn(t *testing.T) {
	s := startFullStack(t, 2, 1)
	orders, pay := s.orders.urls[0], s.payments.urls[0]

	// A: an order for alice (paid over NATS), a direct payment, a refund.
	r := call("POST", orders+"/v1/orders", testAPIKey, "iso-order-1", newOrder("alice"))
	if r.Status != 201 {
		t.Fatalf("create order: %d %s", r.Status, r.Body)
	}
	var order orderBody
	r.decode(t, &order)
	s.waitOrderStatus(t, order.ID, "paid")
	r = call("POST", pay+"/v1/payments", testAPIKey, "iso-pay-1", newPayment("alice", 1500))
	if r.Status != 201 {
		t.Fatalf("create payment: %d %s", r.Status, r.Body)
	}
	var payment paymentBody
	r.decode(t, &payment)
	r = call("POST", pay+"/v1/payments/"+payment.ID+"/refunds", testAPIKey, "iso-refund-1", map[string]any{"amount": 500})
	if r.Status != 201 {
		t.Fatalf("refund: %d %s", r.Status, r.Body)
	}
	var refund struct {
		ID string `json:"id"`
	}
	r.decode(t, &refund)
	// The order's payment belongs to the order's caller, who can read it.
	orderPayment := payments.PaymentIDForOrder(order.ID)
	for _, u := range []string{pay + "/v1/payments/" + orderPayment, pay + "/v1/payments/" + payment.ID, orders + "/v1/orders/" + order.ID} {
		r := call("GET", u, testAPIKey, "", nil)
		if r.Status != 200 {
			t.Fatalf("A reads %s: %d %s", u, r.Status, r.Body)
		}
		// Responses carry neither the card number nor the owning caller.
		if strings.Contains(string(r.Body), "4242424242424242") || strings.Contains(string(r.Body), `"caller"`) {
			t.Fatalf("%s exposes the card or the caller: %s", u, r.Body)
		}
	}

	const ordersOfA = `SELECT id, status, payment_id, updated_at FROM orders WHERE caller = $1 ORDER BY id`
	const paymentsOfA = `SELECT id, status, refunded_amount, updated_at FROM payments WHERE caller = $1 ORDER BY id`
	const refundsOfA = `SELECT r.id, r.status, r.amount, r.updated_at FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE p.caller = $1 ORDER BY r.id`
	beforeOrders := rowsOf(t, s.orders.dbURL, ordersOfA, "shop")
	beforePayments := rowsOf(t, s.payments.dbURL, paymentsOfA, "shop")
	beforeRefunds := rowsOf(t, s.payments.dbURL, refundsOfA, "shop")
	ledgerBefore := len(s.bank.ledger(t, "", ""))

	// B, through every orders instance (an instance that does not own the
	// customer forwards, the answer must not change).
	for _, base := range s.orders.urls {
		assertProblem(t, call("GET", base+"/v1/orders/"+order.ID, otherAPIKey, "", nil), 404, "not-found")
		assertProblem(t, call("POST", base+"/v1/orders/"+order.ID+"/cancel", otherAPIKey, "iso-cancel-"+base, nil), 404, "not-found")
		r := call("GET", base+"/v1/customers/alice/orders", otherAPIKey, "", nil)
		var list struct {
			Orders []orderBody `json:"orders"`
		}
		r.decode(t, &list)
		if r.Status != 200 || len(list.Orders) != 0 {
			t.Fatalf("B lists alice's orders: %d %s", r.Status, r.Body)
		}
	}
	for _, id := range []string{payment.ID, orderPayment} {
		assertProblem(t, call("GET", pay+"/v1/payments/"+id, otherAPIKey, "", nil), 404, "not-found")
		assertProblem(t, call("POST", pay+"/v1/payments/"+id+"/refunds", otherAPIKey, "iso-steal-"+id, map[string]any{"amount": 100}), 404, "not-found")
	}
	r = call("GET", pay+"/v1/customers/alice/payments", otherAPIKey, "", nil)
	var plist struct {
		Payments []paymentBody `json:"payments"`
	}
	r.decode(t, &plist)
	if r.Status != 200 || len(plist.Payments) != 0 {
		t.Fatalf("B lists alice's payments: %d %s", r.Status, r.Body)
	}

	if got := rowsOf(t, s.orders.dbURL, ordersOfA, "shop"); !reflect.DeepEqual(got, beforeOrders) {
		t.Fatalf("A's orders changed:\n%v\n%v", beforeOrders, got)
	}
	if got := rowsOf(t, s.payments.dbURL, paymentsOfA, "shop"); !reflect.DeepEqual(got, beforePayments) {
		t.Fatalf("A's payments changed:\n%v\n%v", beforePayments, got)
	}
	if got := rowsOf(t, s.payments.dbURL, refundsOfA, "shop"); !reflect.DeepEqual(got, beforeRefunds) {
		t.Fatalf("A's refunds changed:\n%v\n%v", beforeRefunds, got)
	}
	if got := len(s.bank.ledger(t, "", "")); got != ledgerBefore {
		t.Fatalf("B's attempts reached the bank: %d ledger entries, was %d", got, ledgerBefore)
	}

	// B's own alice is another customer: its own order, its own list, its
	// own lock and fence.
	r = call("POST", orders+"/v1/orders", otherAPIKey, "iso-order-1", newOrder("alice"))
	if r.Status != 201 {
		t.Fatalf("B creates an order: %d %s", r.Status, r.Body)
	}
	var orderB orderBody
	r.decode(t, &orderB)
	if orderB.ID == order.ID {
		t.Fatal("the same key under two callers named one order")
	}
	eventually(t, 30*time.Second, "B's order to be paid", func() bool {
		r := call("GET", orders+"/v1/orders/"+orderB.ID, otherAPIKey, "", nil)
		var o orderBody
		if r.Status == 200 {
			r.decode(t, &o)
		}
		return o.Status == "paid"
	})
	assertProblem(t, call("GET", orders+"/v1/orders/"+orderB.ID, testAPIKey, "", nil), 404, "not-found")
	for _, c := range []struct {
		key  string
		want string
	}{{testAPIKey, order.ID}, {otherAPIKey, orderB.ID}} {
		r := call("GET", orders+"/v1/customers/alice/orders", c.key, "", nil)
		var list struct {
			Orders []orderBody `json:"orders"`
		}
		r.decode(t, &list)
		if len(list.Orders) != 1 || list.Orders[0].ID != c.want {
			t.Fatalf("alice's orders for one caller: %s, want only %s", r.Body, c.want)
		}
	}
	// Each caller's alice is fenced as that caller's customer: under
	// partition leases (the default, ADR 0070) through the fence row of the
	// partition her caller-scoped key falls in.
	for _, resource := range []string{payments.CustomerPartitionName("shop", "alice"), payments.CustomerPartitionName("other", "alice")} {
		if got := dbCount(t, s.payments.dbURL, `SELECT count(*) FROM fence_tokens WHERE resource = $1`, resource); got != 1 {
			t.Fatalf("fence %s: %d rows, want 1", resource, got)
		}
	}
	if got := dbCount(t, s.payments.dbURL, `SELECT count(*) FROM fence_tokens WHERE resource = 'customer:alice'`); got != 0 {
		t.Fatal("a fence shared by both callers' alice")
	}
}
