package integration

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/orders"
	"github.com/payonce/payonce/services/payments"
)

// TestOddInputIsRefusedAndNothingSticks: a payment is genuinely stuck (its
// process died after marking it authorizing). Then 100 requests that are
// valid JSON but odd (NUL, invalid UTF-8, unpaired surrogates, spaces and
// slashes in customer ids, keys equal up to case, forged cursors and
// cursors of another list) are each refused with a 400 problem, never a
// 5xx, and leave no row behind; client-sent forwarding headers are
// ignored; and the recovery worker still heals the stuck payment.
func TestOddInputIsRefusedAndNothingSticks(t *testing.T) {
	natsURL := testenv.NATS(t)
	coord := startCoordinators(t)
	bank := startBank(t)
	pay := newPaymentsService(t, coord, bank, natsURL, "PAYMENTS_RECOVERY_AFTER=4s")
	pay.start("PAYONCE_FAILPOINTS=" + payments.FailAfterAuthorizing)
	ord := newOrdersService(t, coord, natsURL)
	ord.start()
	ord.start()

	stuckID := payments.PaymentIDFor("shop", "stuck-1")
	if r := call("POST", pay.urls[0]+"/v1/payments", testAPIKey, "stuck-1", newPayment("cust-stuck", 4200)); r.Err == nil {
		t.Fatalf("the process answered (%d %s); the failpoint should have killed it", r.Status, r.Body)
	}
	select {
	case <-pay.procs[0].Done():
	case <-time.After(10 * time.Second):
		t.Fatal("payments still running after its failpoint")
	}
	pay.restart(0)
	// Under partition leases (ADR 0070) the restarted instance, taking its
	// partitions again, may resume the stuck payment at once instead of
	// after PAYMENTS_RECOVERY_AFTER; either way there is exactly one row.
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM payments WHERE id = $1 AND status IN ('authorizing', 'succeeded')`, stuckID); got != 1 {
		t.Fatal("the payment is neither stuck in authorizing nor healed")
	}

	// Real cursors, to misuse on other lists.
	for i := range 2 {
		if r := call("POST", pay.urls[0]+"/v1/payments", testAPIKey, fmt.Sprintf("cursor-%d", i), newPayment("cust-cursor", 100)); r.Status != 201 {
			t.Fatalf("payment for cursors: %d %s", r.Status, r.Body)
		}
	}
	var page struct {
		Next string `json:"next_cursor"`
	}
	call("GET", pay.urls[0]+"/v1/customers/cust-cursor/payments?limit=1", testAPIKey, "", nil).decode(t, &page)
	if page.Next == "" {
		t.Fatal("no cursor issued")
	}
	realCursor := url.QueryEscape(page.Next)

	card := `"card":"4242424242424242"`
	odd := []struct {
		method, url, key, body string
	}{
		{"POST", ord.urls[0] + "/v1/orders", testAPIKey, `{"customer_id":"alice smith","currency":"EUR",` + card + `,"lines":[{"sku":"cup","quantity":1}]}`},
		{"POST", ord.urls[1] + "/v1/orders", testAPIKey, `{"customer_id":"a/b","currency":"EUR",` + card + `,"lines":[{"sku":"cup","quantity":1}]}`},
		{"POST", ord.urls[0] + "/v1/orders", testAPIKey, `{"customer_id":"a\u0000b","currency":"EUR",` + card + `,"lines":[{"sku":"cup","quantity":1}]}`},
		{"POST", ord.urls[1] + "/v1/orders", testAPIKey, "{\"customer_id\":\"caf\xe9\",\"currency\":\"EUR\"," + card + `,"lines":[{"sku":"cup","quantity":1}]}`},
		{"POST", ord.urls[0] + "/v1/orders", testAPIKey, `{"customer_id":"c","CUSTOMER_ID":"d","currency":"EUR",` + card + `,"lines":[{"sku":"cup","quantity":1}]}`},
		{"POST", ord.urls[1] + "/v1/orders", testAPIKey, `{"customer_id":"c","currency":"EUR",` + card + `,"lines":[{"sku":"cup","quantity":1,"Quantity":900}]}`},
		{"POST", pay.urls[0] + "/v1/payments", testAPIKey, `{"customer_id":"alice smith","amount":100,"currency":"EUR",` + card + `}`},
		{"POST", pay.urls[0] + "/v1/payments", testAPIKey, `{"customer_id":"a/b","amount":100,"currency":"EUR",` + card + `}`},
		{"POST", pay.urls[0] + "/v1/payments", testAPIKey, `{"customer_id":"c","amount":1,"AMOUNT":700,"currency":"EUR",` + card + `}`},
		{"POST", pay.urls[0] + "/v1/payments", testAPIKey, `{"customer_id":"\ud800","amount":100,"currency":"EUR",` + card + `}`},
		{"POST", pay.urls[0] + "/v1/payments", testAPIKey, `{"customer_id":"c","amount":100,"currency":"EU\u0000",` + card + `}`},
		{"GET", pay.urls[0] + "/v1/customers/cust-cursor/payments?cursor=MTIzfDNmMWM2YTUyLThhMGUtNGY1NS05ZDBjLTZiMWYwZDhhN2UyMQ", testAPIKey, ""},
		{"GET", pay.urls[0] + "/v1/customers/cust-cursor/payments?cursor=" + realCursor + "x", testAPIKey, ""},
		{"GET", pay.urls[0] + "/v1/customers/cust-other/payments?cursor=" + realCursor, testAPIKey, ""},
		{"GET", pay.urls[0] + "/v1/customers/cust-cursor/payments?cursor=" + realCursor, otherAPIKey, ""},
		{"GET", ord.urls[0] + "/v1/customers/a%20b/orders", testAPIKey, ""},
		{"GET", pay.urls[0] + "/v1/customers/a%2Fb/payments", testAPIKey, ""},
	}
	for i := range 100 {
		c := odd[i%len(odd)]
		key := ""
		if c.method == "POST" {
			key = fmt.Sprintf("odd-%d", i)
		}
		r := callWith(c.method, c.url, c.body, map[string]string{
			"Authorization": "Bearer " + c.key, "Idempotency-Key": key, "Content-Type": "application/json",
		})
		if key == "" {
			r = callWith(c.method, c.url, "", map[string]string{"Authorization": "Bearer " + c.key})
		}
		if r.Err != nil || r.Status != 400 || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("odd request %d (%s %s %q): %d %v %s, want a 400 problem", i, c.method, c.url, c.body, r.Status, r.Err, r.Body)
		}
	}

	// A client claiming to be a forwarding peer is routed like anyone: the
	// header is dropped, the request reaches the customer's owner.
	var table struct {
		Ring []byte `json:"ring"`
	}
	call("GET", coord.urls[0]+"/v1/services/orders/members", "", "", nil).decode(t, &table)
	snap, err := ring.Decode(table.Ring)
	if err != nil {
		t.Fatal(err)
	}
	forwarded := 0
	for i := range 10 {
		customer := fmt.Sprintf("cust-fwd-%d", i)
		owner, _ := snap.Owner(orders.CustomerKey("shop", customer))
		entry := 0
		if owner == "orders-1" {
			entry = 1 // enter at the instance that does not own the customer
		}
		r := callWith("POST", ord.urls[entry]+"/v1/orders", `{"customer_id":"`+customer+`","currency":"EUR",`+card+`,"lines":[{"sku":"cup","quantity":1}]}`,
			map[string]string{"Authorization": "Bearer " + testAPIKey, "Idempotency-Key": "fwd-" + customer, "Content-Type": "application/json",
				"Payonce-Forwarded-By": "orders-9", "Payonce-Forward-Signature": "00"})
		if r.Status != 201 || r.Header.Get("Payonce-Instance") != owner {
			t.Fatalf("%s with a client-sent forwarding header: %d served by %q, want the owner %q: %s", customer, r.Status, r.Header.Get("Payonce-Instance"), owner, r.Body)
		}
		forwarded++
	}

	// The internal route is not for API callers.
	assertProblem(t, call("POST", pay.urls[0]+"/internal/v1/order-payments", testAPIKey, "", map[string]any{"order_id": "x"}), 404, "not-found")

	// Nothing of the odd requests stuck, and the stuck payment heals.
	eventually(t, 60*time.Second, "the recovery worker to heal the stuck payment", func() bool {
		return dbCount(t, pay.dbURL, `SELECT count(*) FROM payments WHERE id = $1 AND status = 'succeeded'`, stuckID) == 1
	})
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM payments WHERE customer_id NOT IN ('cust-stuck', 'cust-cursor') AND customer_id NOT LIKE 'cust-fwd-%'`); got != 0 {
		t.Fatalf("odd requests left %d payments", got)
	}
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM payments WHERE status IN ('pending', 'authorizing')`); got != 0 {
		t.Fatalf("%d payments still unfinished", got)
	}
	if got := dbCount(t, ord.dbURL, `SELECT count(*) FROM orders WHERE customer_id NOT LIKE 'cust-fwd-%'`); got != 0 {
		t.Fatalf("odd requests left %d orders", got)
	}
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM idempotency_keys WHERE key LIKE 'odd-%'`); got != 0 {
		t.Fatalf("%d refused requests kept their payments idempotency key", got)
	}
	if got := len(bank.ledger(t, "capture", stuckID)); got != 1 {
		t.Fatalf("%d captures of the stuck payment, want 1", got)
	}
	t.Logf("100 odd requests refused; %d forged forwards routed to their owners", forwarded)
}
