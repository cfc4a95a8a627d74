package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestAdminListener: with BANK_ADMIN_ADDR set, the fault switches and the
// metrics answer only there, and the payment API only on the public
// listener; a caller of the public port cannot turn faults on.
func TestAdminListener(t *testing.T) {
	bank := startBank(t, map[string]string{"BANK_ADDR": "127.0.0.1:0", "BANK_ADMIN_ADDR": "127.0.0.1:0"})
	public, admin := bank.public, bank.admin

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
	bank.stop()
}
