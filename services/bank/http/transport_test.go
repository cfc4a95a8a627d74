package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/bank"
	bankhttp "github.com/payonce/payonce/services/bank/http"
)

type client struct {
	t   *testing.T
	url string
}

func newBank(t *testing.T, faults bank.Faults) (*client, *bank.Simulator) {
	t.Helper()
	sim := bank.NewSimulator(faults, 1)
	srv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	t.Cleanup(srv.Close)
	return &client{t: t, url: srv.URL}, sim
}

func (c *client) do(method, path, key string, body any) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.url+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set(bankhttp.IdempotencyKeyHeader, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (c *client) mustDo(method, path, key string, body any, wantStatus int) []byte {
	c.t.Helper()
	resp, b, err := c.do(method, path, key, body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.StatusCode != wantStatus {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, wantStatus, b)
	}
	return b
}

func charge(amount int64) bank.AuthorizeRequest {
	return bank.AuthorizeRequest{Amount: amount, Currency: "EUR", Card: "4242424242424242", Reference: "pay_1", Capture: true}
}

func countEntries(sim *bank.Simulator, kind bank.EntryKind) int {
	return len(sim.Ledger(context.Background(), bank.LedgerFilter{Kind: kind}))
}

func TestChargeIsIdempotent(t *testing.T) {
	c, sim := newBank(t, bank.Faults{})
	first := c.mustDo("POST", "/v1/authorizations", "k1", charge(1250), 201)
	again := c.mustDo("POST", "/v1/authorizations", "k1", charge(1250), 201)
	if !bytes.Equal(first, again) {
		t.Fatalf("replay differs:\n%s\n%s", first, again)
	}
	var a bank.Authorization
	if err := json.Unmarshal(first, &a); err != nil || a.Status != bank.Captured || a.CapturedAmount != 1250 {
		t.Fatalf("authorization %+v, %v", a, err)
	}
	if n := countEntries(sim, bank.EntryCapture); n != 1 {
		t.Fatalf("%d captures in the ledger, want 1", n)
	}
	c.mustDo("POST", "/v1/authorizations", "k1", charge(999), 422)
	c.mustDo("POST", "/v1/authorizations", "", charge(1250), 400)
	if n := countEntries(sim, bank.EntryCapture); n != 1 {
		t.Fatalf("refused requests changed the ledger: %d captures", n)
	}
}

func TestConcurrentRetriesChargeOnce(t *testing.T) {
	c, sim := newBank(t, bank.Faults{})
	var wg sync.WaitGroup
	bodies := make([][]byte, 20)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b, err := c.do("POST", "/v1/authorizations", "storm", charge(500))
			if err != nil || resp.StatusCode != 201 {
				t.Errorf("request %d: %v %v", i, resp, err)
			}
			bodies[i] = b
		}()
	}
	wg.Wait()
	for i := range bodies {
		if !bytes.Equal(bodies[i], bodies[0]) {
			t.Fatalf("response %d differs", i)
		}
	}
	if n := countEntries(sim, bank.EntryCapture); n != 1 {
		t.Fatalf("%d captures, want 1", n)
	}
}

// TestLostResponseHealsOnRetry is the case idempotency keys exist for: the
// bank charged, the answer never arrived, and the retry must get the same
// charge back rather than make a second one.
func TestLostResponseHealsOnRetry(t *testing.T) {
	c, sim := newBank(t, bank.Faults{LoseNext: 1})
	if _, _, err := c.do("POST", "/v1/authorizations", "lost-1", charge(700)); err == nil {
		t.Fatal("the first response arrived; the fault should have dropped it")
	}
	if n := countEntries(sim, bank.EntryCapture); n != 1 {
		t.Fatalf("after the lost response the ledger has %d captures, want 1 (the charge went through)", n)
	}
	b := c.mustDo("POST", "/v1/authorizations", "lost-1", charge(700), 201)
	var a bank.Authorization
	_ = json.Unmarshal(b, &a)
	entries := sim.Ledger(context.Background(), bank.LedgerFilter{Kind: bank.EntryCapture})
	if len(entries) != 1 || entries[0].AuthorizationID != a.ID {
		t.Fatalf("retry returned %s; ledger %+v: want the original single charge", a.ID, entries)
	}
}

func TestFailureBeforeProcessingChangesNothing(t *testing.T) {
	c, sim := newBank(t, bank.Faults{FailNext: 1})
	c.mustDo("POST", "/v1/authorizations", "f1", charge(100), 503)
	if n := len(sim.Ledger(context.Background(), bank.LedgerFilter{})); n != 0 {
		t.Fatalf("ledger has %d entries after an injected failure, want 0", n)
	}
	c.mustDo("POST", "/v1/authorizations", "f1", charge(100), 201)
}

func TestDeclineAndRefundRules(t *testing.T) {
	c, sim := newBank(t, bank.Faults{DeclineCards: []string{"4000000000000002"}})
	declined := charge(100)
	declined.Card = "4000000000000002"
	var a bank.Authorization
	_ = json.Unmarshal(c.mustDo("POST", "/v1/authorizations", "d1", declined, 201), &a)
	if a.Status != bank.Declined {
		t.Fatalf("status %s, want declined", a.Status)
	}
	c.mustDo("POST", fmt.Sprintf("/v1/authorizations/%s/refunds", a.ID), "r0", map[string]int64{"amount": 1}, 409)

	_ = json.Unmarshal(c.mustDo("POST", "/v1/authorizations", "c1", charge(1000), 201), &a)
	refunds := fmt.Sprintf("/v1/authorizations/%s/refunds", a.ID)
	c.mustDo("POST", refunds, "r1", map[string]int64{"amount": 600}, 201)
	c.mustDo("POST", refunds, "r1", map[string]int64{"amount": 600}, 201) // replay, not a second refund
	c.mustDo("POST", refunds, "r2", map[string]int64{"amount": 401}, 400) // more than is left
	c.mustDo("POST", refunds, "r3", map[string]int64{"amount": 400}, 201)
	var got bank.Authorization
	_ = json.Unmarshal(c.mustDo("GET", "/v1/authorizations/"+a.ID, "", nil, 200), &got)
	if got.RefundedAmount != 1000 || countEntries(sim, bank.EntryRefund) != 2 {
		t.Fatalf("refunded %d with %d refund entries, want 1000 with 2", got.RefundedAmount, countEntries(sim, bank.EntryRefund))
	}
}

func TestBadInput(t *testing.T) {
	c, sim := newBank(t, bank.Faults{})
	for name, body := range map[string]any{
		"zero amount":      bank.AuthorizeRequest{Amount: 0, Currency: "EUR", Card: "4242424242424242"},
		"negative amount":  bank.AuthorizeRequest{Amount: -1, Currency: "EUR", Card: "4242424242424242"},
		"huge amount":      bank.AuthorizeRequest{Amount: 1 << 62, Currency: "EUR", Card: "4242424242424242"},
		"unknown currency": bank.AuthorizeRequest{Amount: 1, Currency: "EURO", Card: "4242424242424242"},
		"bad card":         bank.AuthorizeRequest{Amount: 1, Currency: "EUR", Card: "4242-4242"},
		"float amount":     map[string]any{"amount": 1.5, "currency": "EUR", "card": "4242424242424242"},
	} {
		t.Run(name, func(t *testing.T) {
			c.mustDo("POST", "/v1/authorizations", "bad-"+name, body, 400)
		})
	}
	c.mustDo("PUT", "/admin/faults", "", map[string]any{"error_rate": 2}, 400)
	c.mustDo("GET", "/v1/authorizations/auth_missing", "", nil, 404)
	if n := len(sim.Ledger(context.Background(), bank.LedgerFilter{})); n != 0 {
		t.Fatalf("bad input wrote %d ledger entries", n)
	}
	if f := sim.Faults(); f.ErrorRate != 0 {
		t.Fatalf("refused fault settings were applied: %+v", f)
	}
	// A corrected request may reuse the key a refused one carried.
	c.mustDo("POST", "/v1/authorizations", "bad-zero amount", charge(5), 201)
}

func TestAdminFaults(t *testing.T) {
	c, _ := newBank(t, bank.Faults{})
	c.mustDo("PUT", "/admin/faults", "", bank.Faults{FailNext: 2}, 200)
	c.mustDo("POST", "/v1/authorizations", "a", charge(1), 503)
	c.mustDo("POST", "/v1/authorizations", "a", charge(1), 503)
	c.mustDo("POST", "/v1/authorizations", "a", charge(1), 201)
	var f bank.Faults
	_ = json.Unmarshal(c.mustDo("GET", "/admin/faults", "", nil, 200), &f)
	if f.FailNext != 0 {
		t.Fatalf("fail_next %d after two failures, want 0", f.FailNext)
	}
}

// TestAnswerNextStatuses: each status the simulator is told to answer is
// answered once, in order, as problem+json, before any effect; then the
// same key charges once.
func TestAnswerNextStatuses(t *testing.T) {
	statuses := []int{408, 409, 423, 425, 429, 500, 502, 503, 504, 401, 403, 404}
	c, sim := newBank(t, bank.Faults{AnswerNext: statuses})
	for _, want := range statuses {
		resp, body, err := c.do(http.MethodPost, "/v1/authorizations", "k-answer", charge(500))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("status %d (%s), want %d as problem+json; body %s", resp.StatusCode, resp.Header.Get("Content-Type"), want, body)
		}
	}
	if n := countEntries(sim, bank.EntryCapture); n != 0 {
		t.Fatalf("%d captures after injected answers, want 0", n)
	}
	c.mustDo(http.MethodPost, "/v1/authorizations", "k-answer", charge(500), http.StatusCreated)
	c.mustDo(http.MethodPost, "/v1/authorizations", "k-answer", charge(500), http.StatusCreated)
	if n := countEntries(sim, bank.EntryCapture); n != 1 {
		t.Fatalf("%d captures, want 1", n)
	}
	// Only error statuses can be asked for.
	c.mustDo(http.MethodPut, "/admin/faults", "", map[string]any{"answer_next": []int{201}}, http.StatusBadRequest)
}
