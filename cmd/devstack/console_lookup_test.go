package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/httpkit"
)

// TestConsoleLookupNamesTheServingInstance starts one dev stack and, for
// several customer ids, compares the console's ring lookup with what the
// real services report: the instance that answered (httpkit.InstanceHeader)
// a request about the demo caller's customer, sent to the first instance
// of each service, which forwards it to the customer's owner. Orders:
// GET /v1/customers/{id}/orders. Payments: POST /v1/payments (the route
// payments forwards to the owner of the customer's partition). The lookup
// names the same instance for every id. Before the console placed the
// caller's customer (it placed the bare id), it named another owner for
// about half of them.
func TestConsoleLookupNamesTheServingInstance(t *testing.T) {
	s := startStack(t)
	consoleURL, ordersURL, paymentsURL := s.urls["console"], s.urls["orders-1"], s.urls["payments-1"]
	if consoleURL == "" || ordersURL == "" || paymentsURL == "" {
		t.Fatalf("devstack printed no console, orders-1 or payments-1 URL: %v", s.urls)
	}
	// The console may read the rings a moment after the services learn a
	// membership change (the stack just started): ask again, bounded, until
	// both sides agree or the wait ends.
	var ids []string
	for i := range 12 {
		ids = append(ids, "lookup-"+strconv.Itoa(i))
	}
	ids = append(ids, "alice", "bob")
	deadline := time.Now().Add(2 * time.Minute)
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	for {
		var mismatches []string
		for _, id := range ids {
			owners := consoleOwners(t, consoleURL, id)
			ordersBy := servedBy(t, "GET", ordersURL+"/v1/customers/"+id+"/orders?limit=1", "", "")
			paymentsBy := servedBy(t, "POST", paymentsURL+"/v1/payments", "lookup-test-"+id,
				`{"customer_id":"`+id+`","amount":100,"currency":"EUR","card":"4242424242424242"}`)
			if owners["orders"] != ordersBy || owners["payments"] != paymentsBy {
				mismatches = append(mismatches, fmt.Sprintf("%s: console says orders %q, payments %q; served by orders %q, payments %q",
					id, owners["orders"], owners["payments"], ordersBy, paymentsBy))
			}
		}
		if len(mismatches) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console's lookup names another instance than the one that serves the customer:\n%s",
				strings.Join(mismatches, "\n"))
		}
		<-poll.C
	}
}

// consoleOwners asks the console's ring lookup who owns customer id, by
// service.
func consoleOwners(t *testing.T, consoleURL, id string) map[string]string {
	t.Helper()
	resp, err := http.Get(consoleURL + "/api/ring/lookup?customer=" + url.QueryEscape(id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var a struct {
		Placements []struct {
			Service string `json:"service"`
			Owner   string `json:"owner"`
		} `json:"placements"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("lookup %s: %s (%v)", id, resp.Status, err)
	}
	out := map[string]string{}
	for _, p := range a.Placements {
		out[p.Service] = p.Owner
	}
	return out
}

// servedBy sends one request as the demo caller and returns the instance
// that answered it.
func servedBy(t *testing.T, method, url, idempotencyKey, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+DemoAPIKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s", method, url, resp.Status)
	}
	return resp.Header.Get(httpkit.InstanceHeader)
}
