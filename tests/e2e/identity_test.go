//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

// TestCoordinatorRefusesCallersWithoutTheirCertificate: the compose
// stack's coordinators run with TLS (#11, F0). From the host, through the
// published port: a caller with no certificate is answered 401, plain HTTP
// gets no API at all, a certificate from another CA fails the handshake, a
// service instance's certificate does not open the operator's routes
// (403), and the operator's certificate is answered.
func TestCoordinatorRefusesCallersWithoutTheirCertificate(t *testing.T) {
	stack(t)
	node := coordinators[0]

	if r := call(t, "GET", node+"/v1/cluster", "", "", nil, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"leader_id"`) {
		t.Fatalf("the operator's certificate: GET /v1/cluster %d %s, want 200 with the leader", r.status, r.body)
	}

	// Trusts the CA, presents nothing.
	anonymous, err := partyClient(identity.AdminCLI)
	if err != nil {
		t.Fatal(err)
	}
	anonymous.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/cluster", ""},
		{"POST", "/v1/locks/e2e-no-cert/leases", `{"request_id":"e2e-no-cert","ttl_ms":5000}`},
		{"GET", "/v1/services/payments/members", ""},
	} {
		status, body := do(t, anonymous, req.method, node+req.path, req.body)
		if status != http.StatusUnauthorized {
			t.Errorf("no certificate: %s %s answered %d %s, want 401", req.method, req.path, status, body)
		}
	}

	// Plain HTTP on the API port: the TLS server answers no route.
	plain := &http.Client{Timeout: 10 * time.Second}
	if status, body := do(t, plain, "GET", strings.Replace(node, "https://", "http://", 1)+"/v1/services/payments/members", ""); status/100 == 2 {
		t.Errorf("plain HTTP answered %d %s", status, body)
	}

	// A certificate naming the operator, from a CA the stack does not know.
	dir := t.TempDir()
	now := time.Now()
	rogueCA, err := identity.NewCA("not the stack's CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := rogueCA.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	rogueFiles, err := rogueCA.WriteParty(dir, identity.Party{ID: identity.AdminCLI}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rogueFiles.CA = identity.PartyFiles(certsDir, identity.AdminCLI).CA // it trusts the real server
	rogue, err := identity.HTTPClient(rogueFiles, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := rogue.Get(node + "/v1/cluster"); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from another CA was answered %s, want a failed handshake", resp.Status)
	}

	// A service instance's own certificate is an identity, but not the
	// operator's: the cluster routes are refused, its own member list read.
	orders, err := partyClient(identity.ID{Service: identity.Orders, Instance: "orders-1"})
	if err != nil {
		t.Fatal(err)
	}
	if status, body := do(t, orders, "GET", node+"/v1/cluster", ""); status != http.StatusForbidden {
		t.Errorf("orders-1's certificate: GET /v1/cluster %d %s, want 403", status, body)
	}
	if status, body := do(t, orders, "GET", node+"/v1/services/orders/members?stale=true", ""); status != http.StatusOK {
		t.Errorf("orders-1's certificate: GET its members %d %s, want 200", status, body)
	}
}

// do sends one request with client and returns the status and body; a
// transport error fails the test.
func do(t *testing.T, client *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}

// TestPeersMeetOnlyOverMutualTLS: in the compose stack every orders and
// payments instance registers its internal listener (https://, mutual TLS
// between instances of its service) as the address peers forward to, and
// the public ports answer the hand-over routes 404 even with the peer key;
// an order created through the instance that does not own its customer is
// still served by the owner (forwarded over that listener) and paid, which
// charges the bank over its mutual-TLS payment API.
func TestPeersMeetOnlyOverMutualTLS(t *testing.T) {
	stack(t)
	for _, service := range []string{"orders", "payments"} {
		r := call(t, "GET", coordinators[0]+"/v1/services/"+service+"/members", "", "", nil, nil)
		var v struct {
			Members []struct {
				Instance string `json:"instance"`
				Addr     string `json:"addr"`
			} `json:"members"`
		}
		r.decode(t, &v)
		if len(v.Members) < 2 {
			t.Fatalf("%s: %d members, want 2", service, len(v.Members))
		}
		for _, m := range v.Members {
			if !strings.HasPrefix(m.Addr, "https://") {
				t.Errorf("%s registered %q: peers would forward to it in clear", m.Instance, m.Addr)
			}
		}
	}
	for _, base := range []string{payments1, payments2} {
		r := call(t, "POST", base+"/internal/v1/order-payments", demoAPIKey, "", map[string]any{}, nil)
		if r.status != http.StatusNotFound {
			t.Errorf("%s/internal/v1/order-payments answered %d, want 404", base, r.status)
		}
	}
	// Both entry points serve creates for customers of either owner: some
	// are forwarded, and every one is paid.
	served := map[string]bool{}
	for i := range 8 {
		customer := fmt.Sprintf("e2e-peer-%d-%d", time.Now().UnixNano(), i)
		entry := []string{orders1, orders2}[i%2]
		r := call(t, "POST", entry+"/v1/orders", demoAPIKey, "e2e-peer-"+customer, map[string]any{
			"customer_id": customer, "currency": "EUR", "card": "4242424242424242",
			"lines": []map[string]any{{"sku": "espresso", "quantity": 1}},
		}, nil)
		if r.status != http.StatusCreated {
			t.Fatalf("create through %s: %d %s", entry, r.status, r.body)
		}
		served[r.header.Get("Payonce-Instance")] = true
		var o struct {
			ID string `json:"id"`
		}
		r.decode(t, &o)
		eventually(t, 60*time.Second, "order "+o.ID+" to be paid", func() (bool, string) {
			g := call(t, "GET", orders1+"/v1/orders/"+o.ID, demoAPIKey, "", nil, nil)
			return strings.Contains(string(g.body), `"status":"paid"`), string(g.body)
		})
	}
	if len(served) < 2 {
		t.Logf("every create was served by %v (no forwarding exercised this run)", served)
	}
}
