package integration

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/services/payments"
)

// TestQuotaAnswers429AndFreesTheKey: a caller bursts past its quota on
// payments (3 requests, refilled at 1 per second). The requests beyond the
// burst get 429 rate-limited with Retry-After and change nothing: no
// payment, no charge, no idempotency key kept. Another caller is not
// limited by it. After Retry-After, the refused request retried with the
// same key runs.
func TestQuotaAnswers429AndFreesTheKey(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	pay := newPaymentsService(t, coord, bank, testenv.NATS(t), "PAYMENTS_RATE_LIMIT=1", "PAYMENTS_RATE_BURST=3")
	pay.start()
	url := pay.urls[0] + "/v1/payments"

	var limited []string
	var retryAfter int
	for i := range 8 {
		key := fmt.Sprintf("burst-%d", i)
		r := call("POST", url, testAPIKey, key, newPayment("cust-quota", 500))
		switch r.Status {
		case 201:
		case 429:
			assertProblem(t, r, 429, "rate-limited")
			n, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || n < 1 {
				t.Fatalf("429 without a usable Retry-After: %q", r.Header.Get("Retry-After"))
			}
			retryAfter = n
			limited = append(limited, key)
		default:
			t.Fatalf("%s: %d %s", key, r.Status, r.Body)
		}
	}
	// The burst is 3 and at most a token or two refill while the loop
	// runs; most of the 8 must have been refused.
	if len(limited) < 3 {
		t.Fatalf("only %d of 8 requests refused under a burst of 3", len(limited))
	}
	for _, key := range limited {
		if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM idempotency_keys WHERE key = $1`, key); got != 0 {
			t.Fatalf("the refused request kept its key %s", key)
		}
		id := payments.PaymentIDFor("shop", key)
		if got := dbCount(t, pay.dbURL, `SELECT count(*) FROM payments WHERE id = $1`, id); got != 0 {
			t.Fatalf("the refused request %s wrote a payment", key)
		}
	}
	captured := len(bank.ledger(t, "capture", ""))
	if captured != 8-len(limited) {
		t.Fatalf("%d captures for %d accepted requests", captured, 8-len(limited))
	}
	// Another caller has its own bucket.
	if r := call("POST", url, otherAPIKey, "other-1", newPayment("cust-quota", 500)); r.Status != 201 {
		t.Fatalf("another caller: %d %s", r.Status, r.Body)
	}
	// After Retry-After the refused key runs: it was never stored.
	key := limited[0]
	var r apiResponse
	eventually(t, time.Duration(retryAfter+10)*time.Second, "the retry of a refused key to run", func() bool {
		r = call("POST", url, testAPIKey, key, newPayment("cust-quota", 500))
		return r.Status != 429
	})
	if r.Status != 201 || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry of %s: %d replayed=%q %s", key, r.Status, r.Header.Get("Idempotent-Replayed"), r.Body)
	}
}
