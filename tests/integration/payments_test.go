package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/services/payments"
)

// paymentsStack is coordinators, bank and a payments service with one
// instance, on a fresh database and NATS server.
func paymentsStack(t *testing.T, extraEnv ...string) (*paymentsService, *bankSim) {
	t.Helper()
	coord := startCoordinators(t)
	bank := startBank(t)
	svc := newPaymentsService(t, coord, bank, testenv.NATS(t), extraEnv...)
	svc.start()
	return svc, bank
}

type paymentBody struct {
	ID             string `json:"id"`
	CustomerID     string `json:"customer_id"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Status         string `json:"status"`
	BankChargeID   string `json:"bank_charge_id"`
	RefundedAmount int64  `json:"refunded_amount"`
}

func newPayment(customer string, amount int64) map[string]any {
	return map[string]any{"customer_id": customer, "amount": amount, "currency": "EUR", "card": "4242424242424242"}
}

// dbConn connects to a service's database.
func dbConn(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

// dbCount runs a count query on a service's database.
func dbCount(t *testing.T, dbURL, query string, args ...any) int {
	t.Helper()
	ctx := context.Background()
	conn := dbConn(t, dbURL)
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPaymentsConcurrentRetriesChargeOnce: 50 identical requests with one
// key at once, against a real payments process, real Postgres, the
// coordinator cluster and the bank: one payment, one charge, and every
// client sees either the payment or "in flight, retry".
func TestPaymentsConcurrentRetriesChargeOnce(t *testing.T) {
	svc, bank := paymentsStack(t)
	url := svc.urls[0] + "/v1/payments"
	const n = 50
	responses := make([]apiResponse, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			responses[i] = call("POST", url, testAPIKey, "storm-1", newPayment("cust-1", 1250))
		}()
	}
	close(start)
	wg.Wait()

	var created []byte
	conflicts := 0
	for i, r := range responses {
		switch {
		case r.Err != nil:
			t.Fatalf("request %d: %v", i, r.Err)
		case r.Status == http.StatusCreated:
			if created == nil {
				created = r.Body
			} else if !bytes.Equal(created, r.Body) {
				t.Fatalf("two different 201 bodies:\n%s\n%s", created, r.Body)
			}
		case r.Status == http.StatusConflict:
			conflicts++
			if r.Header.Get("Retry-After") == "" {
				t.Errorf("409 without Retry-After")
			}
		default:
			t.Fatalf("request %d: status %d, want 201 or 409: %s", i, r.Status, r.Body)
		}
	}
	if created == nil {
		t.Fatal("no request got 201")
	}
	t.Logf("%d x 201 (same body), %d x 409", n-conflicts, conflicts)

	var p paymentBody
	json.Unmarshal(created, &p)
	if p.Status != "succeeded" || p.Amount != 1250 || p.ID != payments.PaymentIDFor("shop", "storm-1") {
		t.Fatalf("payment %+v", p)
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 1 {
		t.Fatalf("%d payment rows, want 1", got)
	}
	if got := len(bank.ledger(t, "capture", p.ID)); got != 1 {
		t.Fatalf("%d bank captures, want 1", got)
	}

	replay := call("POST", url, testAPIKey, "storm-1", newPayment("cust-1", 1250))
	if replay.Status != http.StatusCreated || !bytes.Equal(replay.Body, created) {
		t.Fatalf("replay: %d %s", replay.Status, replay.Body)
	}
	if replay.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay lacks Idempotent-Replayed: true (headers %v)", replay.Header)
	}
	if replay.Header.Get("Location") != "/v1/payments/"+p.ID {
		t.Fatalf("replay Location %q", replay.Header.Get("Location"))
	}
}

func TestPaymentsKeyRulesAndCallerScope(t *testing.T) {
	svc, bank := paymentsStack(t)
	url := svc.urls[0] + "/v1/payments"
	first := call("POST", url, testAPIKey, "k-1", newPayment("cust-2", 500))
	if first.Status != 201 {
		t.Fatalf("first: %d %s", first.Status, first.Body)
	}

	changed := call("POST", url, testAPIKey, "k-1", newPayment("cust-2", 501))
	assertProblem(t, changed, 422, "idempotency-key-reused")
	missing := call("POST", url, testAPIKey, "", newPayment("cust-2", 500))
	assertProblem(t, missing, 400, "idempotency-key-missing")
	unauth := call("POST", url, "", "k-2", newPayment("cust-2", 500))
	assertProblem(t, unauth, 401, "unauthorized")
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 1 {
		t.Fatalf("refused requests wrote payments: %d rows", got)
	}

	// Another caller's identical key is another intent: its own payment,
	// never a replay of the first caller's response.
	other := call("POST", url, otherAPIKey, "k-1", newPayment("cust-2", 500))
	if other.Status != 201 || other.Header.Get("Idempotent-Replayed") == "true" {
		t.Fatalf("other caller: %d replayed=%q %s", other.Status, other.Header.Get("Idempotent-Replayed"), other.Body)
	}
	var a, b paymentBody
	first.decode(t, &a)
	other.decode(t, &b)
	if a.ID == b.ID {
		t.Fatal("two callers' payments share an id")
	}
	if got := len(bank.ledger(t, "capture", "")); got != 2 {
		t.Fatalf("%d captures, want 2 (one per caller)", got)
	}
}

func TestPaymentsBadInputChangesNothing(t *testing.T) {
	svc, bank := paymentsStack(t)
	url := svc.urls[0] + "/v1/payments"
	cases := []struct {
		name, key string
		body      any
		status    int
		problem   string
	}{
		{"malformed JSON", "b1", `{"customer_id": "c", "amount": `, 400, "malformed-json"},
		{"unknown field", "b2", `{"customer_id":"c","amount":5,"currency":"EUR","card":"4242424242424242","total":5}`, 400, "malformed-json"},
		{"float amount", "b3", `{"customer_id":"c","amount":5.5,"currency":"EUR","card":"4242424242424242"}`, 400, "malformed-json"},
		{"zero amount", "b4", newPayment("c", 0), 400, "invalid"},
		{"negative amount", "b5", newPayment("c", -100), 400, "invalid"},
		{"huge amount", "b6", newPayment("c", 1<<60), 400, "invalid"},
		{"unknown currency", "b7", map[string]any{"customer_id": "c", "amount": 5, "currency": "XYZ", "card": "4242424242424242"}, 400, "invalid"},
		{"no customer", "b8", newPayment("", 5), 400, "invalid"},
		{"bad card", "b9", map[string]any{"customer_id": "c", "amount": 5, "currency": "EUR", "card": "abc"}, 400, "invalid"},
		{"oversized body", "b10", `{"customer_id":"` + strings.Repeat("x", 100_000) + `"}`, 413, "too-large"},
		{"key too long", strings.Repeat("k", 300), newPayment("c", 5), 400, "idempotency-key-invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assertProblem(t, call("POST", url, testAPIKey, tc.key, tc.body), tc.status, tc.problem)
		})
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 0 {
		t.Fatalf("bad input wrote %d payments", got)
	}
	if got := len(bank.ledger(t, "", "")); got != 0 {
		t.Fatalf("bad input reached the bank: %d ledger entries", got)
	}
	// A 4xx answer for bad input is final for its key: fixing the body
	// needs a new key, which is then a fresh intent.
	ok := call("POST", url, testAPIKey, "b11", newPayment("c", 5))
	if ok.Status != 201 {
		t.Fatalf("valid request after bad ones: %d %s", ok.Status, ok.Body)
	}
}

// TestPaymentsBankLostResponseHeals: the bank charges and the response is
// lost; the payment stays authorizing, the client's retry asks the bank
// again with the same key and gets the original charge: one capture.
func TestPaymentsBankLostResponseHeals(t *testing.T) {
	svc, bank := paymentsStack(t)
	bank.setFaults(t, map[string]any{"lose_next": 1})
	url := svc.urls[0] + "/v1/payments"
	first := call("POST", url, testAPIKey, "lost-1", newPayment("cust-3", 900))
	if first.Status != http.StatusServiceUnavailable {
		t.Fatalf("first attempt: %d %s, want 503 (the bank's answer was lost)", first.Status, first.Body)
	}
	id := payments.PaymentIDFor("shop", "lost-1")
	if got := len(bank.ledger(t, "capture", id)); got != 1 {
		t.Fatalf("bank captured %d times after the lost response, want 1", got)
	}
	var retry apiResponse
	eventually(t, 20*time.Second, "the retry to succeed", func() bool {
		retry = call("POST", url, testAPIKey, "lost-1", newPayment("cust-3", 900))
		return retry.Status == http.StatusCreated
	})
	var p paymentBody
	retry.decode(t, &p)
	if p.Status != "succeeded" || p.ID != id {
		t.Fatalf("payment %+v", p)
	}
	if got := len(bank.ledger(t, "capture", id)); got != 1 {
		t.Fatalf("bank captured %d times in all, want 1", got)
	}
}

// TestPaymentsCrashAtEachRecoveryPoint SIGKILLs the payments process at
// each recovery point of a charge. After a restart, the recovery worker
// finishes the payment on its own, and the client's retry gets it: one
// payment, one bank charge, one outcome event.
func TestPaymentsCrashAtEachRecoveryPoint(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	natsURL := testenv.NATS(t)
	// Every recovery point a charge has. There is no point between
	// recording the intent and marking it authorizing: the lease is taken
	// first and the intent is recorded already authorizing, in one commit
	// (payments.service.pay), so FailAfterAuthorizing is the first point.
	for _, point := range []string{payments.FailAfterAuthorizing, payments.FailAfterBankCharge, payments.FailAfterFinish} {
		t.Run(point, func(t *testing.T) {
			svc := newPaymentsService(t, coord, bank, natsURL)
			svc.start("PAYONCE_FAILPOINTS=" + point)
			key := "crash-" + point
			id := payments.PaymentIDFor("shop", key)
			url := svc.urls[0] + "/v1/payments"
			body := newPayment("cust-crash", 4200)

			if r := call("POST", url, testAPIKey, key, body); r.Err == nil {
				t.Fatalf("the process answered (%d %s); the failpoint should have killed it", r.Status, r.Body)
			}
			select {
			case <-svc.procs[0].Done():
			case <-time.After(10 * time.Second):
				t.Fatal("process still running after its failpoint")
			}
			svc.restart(0)

			// The recovery worker finishes it without any client retry.
			eventually(t, 30*time.Second, "the recovery worker to finish the payment", func() bool {
				r := call("GET", svc.urls[0]+"/v1/payments/"+id, testAPIKey, "", nil)
				var p paymentBody
				return r.Status == 200 && json.Unmarshal(r.Body, &p) == nil && p.Status == "succeeded"
			})
			// The client's retry gets the same payment.
			var retry apiResponse
			eventually(t, 30*time.Second, "the client's retry to succeed", func() bool {
				retry = call("POST", url, testAPIKey, key, body)
				return retry.Status == http.StatusCreated
			})
			var p paymentBody
			retry.decode(t, &p)
			if p.ID != id || p.Status != "succeeded" {
				t.Fatalf("retry got %+v", p)
			}
			if got := len(bank.ledger(t, "capture", id)); got != 1 {
				t.Fatalf("%d bank captures, want 1", got)
			}
			if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 1 {
				t.Fatalf("%d payments, want 1", got)
			}
			if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM outbox WHERE payload->>'payment_id' = $1`, id); got != 1 {
				t.Fatalf("%d outcome events, want 1", got)
			}
		})
	}
}

// TestPaymentsOrderRedeliveredManyTimes delivers the same orders.created
// event ten times, past JetStream's de-duplication (distinct message ids),
// to two payments instances: one payment, one charge, one outcome event.
func TestPaymentsOrderRedeliveredManyTimes(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	natsURL := testenv.NATS(t)
	svc := newPaymentsService(t, coord, bank, natsURL)
	svc.start()
	svc.start()

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ev := testSeal.SealOrderCreated(events.OrderCreatedEvent{EventID: "evt-order-1", OrderID: "order-1", Caller: "shop", CustomerID: "cust-4", Amount: 3300, Currency: "EUR", Card: "4242424242424242", OccurredAt: time.Now().UTC()})
	data, _ := json.Marshal(ev)
	for i := range 10 {
		msg := nats.NewMsg(events.OrderCreated)
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-delivery-%d", ev.EventID, i))
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	id := payments.PaymentIDForOrder("order-1")
	eventually(t, 30*time.Second, "the order's payment to succeed", func() bool {
		return dbCount(t, svc.dbURL, `SELECT count(*) FROM payments WHERE id = $1 AND status = 'succeeded'`, id) == 1
	})
	// Let every delivery be processed before counting.
	eventually(t, 30*time.Second, "all ten deliveries to be acknowledged", func() bool {
		stream, err := js.Stream(context.Background(), "ORDERS")
		if err != nil {
			return false
		}
		cons, err := stream.Consumer(context.Background(), "payments-orders-created")
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream == 10 && info.NumAckPending == 0
	})
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != 1 {
		t.Fatalf("%d payments, want 1", got)
	}
	if got := len(bank.ledger(t, "capture", id)); got != 1 {
		t.Fatalf("%d bank captures, want 1", got)
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM outbox WHERE payload->>'order_id' = 'order-1'`); got != 1 {
		t.Fatalf("%d outcome events, want 1", got)
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM inbox WHERE message_id = $1`, ev.EventID); got != 1 {
		t.Fatalf("inbox rows for the event: %d, want 1", got)
	}
}

func TestPaymentsRefundsNeverExceedCapture(t *testing.T) {
	svc, bank := paymentsStack(t)
	base := svc.urls[0]
	r := call("POST", base+"/v1/payments", testAPIKey, "pay-r", newPayment("cust-5", 1000))
	if r.Status != 201 {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	var p paymentBody
	r.decode(t, &p)
	refunds := base + "/v1/payments/" + p.ID + "/refunds"

	first := call("POST", refunds, testAPIKey, "refund-1", map[string]int64{"amount": 600})
	if first.Status != 201 {
		t.Fatalf("refund 600: %d %s", first.Status, first.Body)
	}
	replay := call("POST", refunds, testAPIKey, "refund-1", map[string]int64{"amount": 600})
	if replay.Status != 201 || !bytes.Equal(replay.Body, first.Body) {
		t.Fatalf("refund replay: %d %s", replay.Status, replay.Body)
	}
	assertProblem(t, call("POST", refunds, testAPIKey, "refund-2", map[string]int64{"amount": 401}), 400, "refund-exceeds-captured")
	assertProblem(t, call("POST", refunds, testAPIKey, "refund-3", map[string]int64{"amount": 0}), 400, "invalid")
	if rest := call("POST", refunds, testAPIKey, "refund-4", map[string]int64{"amount": 400}); rest.Status != 201 {
		t.Fatalf("refund the rest: %d %s", rest.Status, rest.Body)
	}
	got := call("GET", base+"/v1/payments/"+p.ID, testAPIKey, "", nil)
	got.decode(t, &p)
	if p.RefundedAmount != 1000 {
		t.Fatalf("refunded %d, want 1000", p.RefundedAmount)
	}
	if n := len(bank.ledger(t, "refund", p.ID)); n != 2 {
		t.Fatalf("%d bank refunds, want 2", n)
	}
	assertProblem(t, call("POST", base+"/v1/payments/00000000-0000-0000-0000-000000000000/refunds", testAPIKey, "refund-5", map[string]int64{"amount": 1}), 404, "not-found")
}

func TestPaymentsListAndGet(t *testing.T) {
	svc, _ := paymentsStack(t)
	base := svc.urls[0]
	for i := range 5 {
		if r := call("POST", base+"/v1/payments", testAPIKey, fmt.Sprintf("list-%d", i), newPayment("cust-6", int64(100+i))); r.Status != 201 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		r := call("GET", base+"/v1/customers/cust-6/payments?limit=2&cursor="+cursor, testAPIKey, "", nil)
		if r.Status != 200 {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		var page struct {
			Payments []paymentBody `json:"payments"`
			Next     string        `json:"next_cursor"`
		}
		r.decode(t, &page)
		for _, p := range page.Payments {
			if seen[p.ID] {
				t.Fatalf("payment %s on two pages", p.ID)
			}
			seen[p.ID] = true
		}
		if page.Next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = page.Next
	}
	if len(seen) != 5 {
		t.Fatalf("listed %d payments, want 5", len(seen))
	}
	assertProblem(t, call("GET", base+"/v1/customers/cust-6/payments?cursor=garbage", testAPIKey, "", nil), 400, "invalid")
	assertProblem(t, call("GET", base+"/v1/customers/cust-6/payments?limit=1000", testAPIKey, "", nil), 400, "invalid")
	assertProblem(t, call("GET", base+"/v1/payments/not-a-uuid", testAPIKey, "", nil), 404, "not-found")
	if r := call("GET", base+"/v1/payments/not-a-uuid", "", "", nil); r.Status != 401 {
		t.Fatalf("unauthenticated GET: %d", r.Status)
	}
}

func assertProblem(t *testing.T, r apiResponse, status int, problemType string) {
	t.Helper()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json: %s", ct, r.Body)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil || p.Status != status || !strings.HasSuffix(p.Type, "#"+problemType) {
		t.Fatalf("problem %s, want type #%s", r.Body, problemType)
	}
}
