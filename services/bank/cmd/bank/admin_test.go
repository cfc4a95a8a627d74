package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAdminListener: with BANK_ADMIN_ADDR set, the fault switches and the
// metrics answer only there, and the payment API only on the public
// listener; a caller of the public port cannot turn faults on.
func TestAdminListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	env := map[string]string{"BANK_ADDR": "127.0.0.1:0", "BANK_ADMIN_ADDR": "127.0.0.1:0"}
	go func() { done <- run(ctx, []string{"bank"}, func(k string) string { return env[k] }, w); w.Close() }()

	addrs := map[string]string{}
	lines := bufio.NewScanner(out)
	for len(addrs) < 2 && lines.Scan() {
		var rec map[string]any
		if json.Unmarshal(lines.Bytes(), &rec) == nil {
			if msg, _ := rec["msg"].(string); msg == "bank simulator listening" || msg == "bank admin listening" {
				addrs[msg], _ = rec["addr"].(string)
			}
		}
	}
	public, admin := addrs["bank simulator listening"], addrs["bank admin listening"]
	if public == "" || admin == "" {
		t.Fatalf("bank did not say where it listens: %v (%v)", addrs, <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	status := func(method, url, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "admin-test-"+method+url)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const charge = `{"amount":100,"currency":"EUR","card":"4242424242424242","capture":true}`
	const faults = `{"error_rate":1}`
	for _, c := range []struct {
		method, url, body string
		want              int
	}{
		{"PUT", "http://" + public + "/admin/faults", faults, 404},
		{"GET", "http://" + public + "/admin/faults", "", 404},
		{"GET", "http://" + public + "/metrics", "", 404},
		{"POST", "http://" + public + "/v1/authorizations", charge, 201},
		{"GET", "http://" + public + "/readyz", "", 200},
		{"GET", "http://" + admin + "/admin/faults", "", 200},
		{"GET", "http://" + admin + "/metrics", "", 200},
		{"POST", "http://" + admin + "/v1/authorizations", charge, 404},
	} {
		if got := status(c.method, c.url, c.body); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.url, got, c.want)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after cancellation")
	}
}
