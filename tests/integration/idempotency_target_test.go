package integration

import (
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/testenv"
)

// TestKeyReusedOnAnotherTargetIs422: the fingerprint covers the concrete
// target, so the key that cancelled order A cannot cancel order B (422,
// and B stays pending until B is cancelled with its own key); the same
// for refunds of two payments. A request refused for its content type
// before anything ran leaves its key free: the corrected retry runs.
func TestKeyReusedOnAnotherTargetIs422(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	// Orders on a NATS of their own, with no payments service listening:
	// orders stay pending_payment, so they can be cancelled.
	ord := newOrdersService(t, coord, testenv.NATS(t))
	ord.start()
	pay := newPaymentsService(t, coord, bank, testenv.NATS(t))
	pay.start()

	var a, b orderBody
	call("POST", ord.urls[0]+"/v1/orders", testAPIKey, "target-order-a", newOrder("cust-target")).decode(t, &a)
	call("POST", ord.urls[0]+"/v1/orders", testAPIKey, "target-order-b", newOrder("cust-target")).decode(t, &b)
	if a.ID == "" || b.ID == "" || a.ID == b.ID {
		t.Fatalf("orders %q and %q", a.ID, b.ID)
	}
	if r := call("POST", ord.urls[0]+"/v1/orders/"+a.ID+"/cancel", testAPIKey, "cancel-key", nil); r.Status != 200 {
		t.Fatalf("cancel A: %d %s", r.Status, r.Body)
	}
	assertProblem(t, call("POST", ord.urls[0]+"/v1/orders/"+b.ID+"/cancel", testAPIKey, "cancel-key", nil), 422, "idempotency-key-reused")
	if got := ord.orderStatus(t, b.ID); got != "pending_payment" {
		t.Fatalf("B is %s after A's key was reused on it, want pending_payment", got)
	}
	if r := call("POST", ord.urls[0]+"/v1/orders/"+b.ID+"/cancel", testAPIKey, "cancel-key-b", nil); r.Status != 200 {
		t.Fatalf("cancel B with its own key: %d %s", r.Status, r.Body)
	}
	if got := ord.orderStatus(t, b.ID); got != "cancelled" {
		t.Fatalf("B is %s, want cancelled", got)
	}

	var p1, p2 paymentBody
	call("POST", pay.urls[0]+"/v1/payments", testAPIKey, "target-pay-1", newPayment("cust-target", 1000)).decode(t, &p1)
	call("POST", pay.urls[0]+"/v1/payments", testAPIKey, "target-pay-2", newPayment("cust-target", 1000)).decode(t, &p2)
	if p1.Status != "succeeded" || p2.Status != "succeeded" {
		t.Fatalf("payments %s and %s", p1.Status, p2.Status)
	}
	refund := map[string]any{"amount": 100}
	if r := call("POST", pay.urls[0]+"/v1/payments/"+p1.ID+"/refunds", testAPIKey, "refund-key", refund); r.Status != 201 {
		t.Fatalf("refund 1: %d %s", r.Status, r.Body)
	}
	assertProblem(t, call("POST", pay.urls[0]+"/v1/payments/"+p2.ID+"/refunds", testAPIKey, "refund-key", refund), 422, "idempotency-key-reused")
	if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM refunds WHERE payment_id = $1`, p2.ID); got != 0 {
		t.Fatalf("payment 2 has %d refunds after a reused key", got)
	}
	if r := call("POST", pay.urls[0]+"/v1/payments/"+p2.ID+"/refunds", testAPIKey, "refund-key-2", refund); r.Status != 201 {
		t.Fatalf("refund 2 with its own key: %d %s", r.Status, r.Body)
	}
	if got := len(bank.ledger(t, "refund", "")); got != 2 {
		t.Fatalf("%d refunds at the bank, want 2", got)
	}

	// 400 for the content type, before anything ran: the key is free.
	r := callWithContentType("POST", pay.urls[0]+"/v1/payments", testAPIKey, "ct-key", "text/plain", `{"customer_id":"cust-ct","amount":700,"currency":"EUR","card":"4242424242424242"}`)
	assertProblem(t, r, 400, "unsupported-media-type")
	r = call("POST", pay.urls[0]+"/v1/payments", testAPIKey, "ct-key", newPayment("cust-ct", 700))
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("corrected retry: %d replayed=%q %s", r.Status, r.Header.Get("Idempotent-Replayed"), r.Body)
	}
	if got := len(bank.ledger(t, "capture", "")); got != 3 {
		t.Fatalf("%d captures, want 3", got)
	}
}

// callWithContentType is call with a chosen Content-Type and a raw body.
func callWithContentType(method, url, apiKey, idemKey, contentType, body string) apiResponse {
	return callWith(method, url, body, map[string]string{
		"Authorization": "Bearer " + apiKey, "Idempotency-Key": idemKey, "Content-Type": contentType,
	})
}

// callWith sends body with exactly the given headers.
func callWith(method, url, body string, headers map[string]string) apiResponse {
	req, err := newRequest(method, url, strings.NewReader(body))
	if err != nil {
		return apiResponse{Err: err}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	return do(req)
}
