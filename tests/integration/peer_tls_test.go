package integration

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/partition"
)

// attacker is an HTTP client presenting the certificate in files (none when
// nil) and trusting any server: it does not care who answers, only whether
// it gets in.
func attacker(t *testing.T, files *identity.Files) *http.Client {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true} // the attacker's side; the servers verify
	if files != nil {
		cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// send posts body to url through client with the headers given; the answer
// is a status, or an error when the connection was refused (a failed
// handshake included).
func send(client *http.Client, url string, body []byte, header map[string]string) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// signedForward is the headers of a forwarded create, signed with the
// services' INTERNAL_SECRET: what an attacker who stole the secret sends.
func signedForward(t *testing.T, from, path, key string, body []byte) map[string]string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://x"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"Authorization":                  "Bearer " + testAPIKey,
		"Idempotency-Key":                key,
		partition.ForwardedHeader:        from,
		partition.ForwardSignatureHeader: partition.Signature(events.DeriveKey(testInternalSecret, "forwarding"), from, req, body),
	}
}

// TestPeerListenersRefuseOutsiders attacks the instance-to-instance hops of
// a stack run with identities (docs/security.md, "Service-to-service"):
// orders' and payments' internal listeners (mutual TLS, same service only),
// their public listeners, and the bank's payment API. Every attacker below
// holds INTERNAL_SECRET and the peer API key, so only the certificates stop
// them; a control with the right certificate gets through each door, so the
// refusals are the certificates' doing.
func TestPeerListenersRefuseOutsiders(t *testing.T) {
	s := startFullStack(t, 2, 2)
	pki := s.coord.pki
	foreign := newPKI(t)
	own := func(id identity.ID) *identity.Files { f := identity.PartyFiles(pki.dir, id); return &f }
	orders2 := identity.ID{Service: identity.Orders, Instance: "orders-2"}
	payments2 := identity.ID{Service: identity.Payments, Instance: "payments-2"}
	foreignOrders := foreign.issue(t, identity.ID{Service: identity.Orders, Instance: "orders-2"})
	foreignPayments := foreign.issue(t, payments2)

	// Instances register their internal listeners, and only those.
	for _, service := range []string{"orders", "payments"} {
		var v struct {
			Members []struct {
				Instance string `json:"instance"`
				Addr     string `json:"addr"`
			} `json:"members"`
		}
		call("GET", s.coord.urls[0]+"/v1/services/"+service+"/members", "", "", nil).decode(t, &v)
		for _, m := range v.Members {
			if !strings.HasPrefix(m.Addr, "https://") {
				t.Fatalf("%s registered %q: peers would forward to it in clear", m.Instance, m.Addr)
			}
		}
	}

	t.Run("orders internal listener", func(t *testing.T) {
		const customer = "peer-attack"
		ordersOf := func() int {
			return dbCount(t, s.orders.dbURL, `SELECT count(*) FROM orders WHERE customer_id = $1`, customer)
		}
		body, _ := json.Marshal(newOrder(customer))
		url := s.orders.internalURLs[0] + "/v1/orders"
		for name, files := range map[string]*identity.Files{
			"no certificate":                      nil,
			"an orders certificate of another CA": &foreignOrders,
			"payments-1's certificate":            own(payments1),
		} {
			key := "peer-attack-" + strings.ReplaceAll(name, " ", "-")
			status, err := send(attacker(t, files), url, body, signedForward(t, "orders-2", "/v1/orders", key, body))
			if err == nil && status != http.StatusForbidden {
				t.Errorf("%s: a forwarded create answered %d, want a refused handshake or 403", name, status)
			}
			t.Logf("%s: %d %v", name, status, err)
		}
		// A certificate of the service, but a request no peer forwarded:
		// API callers belong on the public listener.
		status, err := send(attacker(t, own(orders2)), url, body, map[string]string{"Authorization": "Bearer " + testAPIKey, "Idempotency-Key": "peer-attack-unforwarded"})
		if err != nil || status != http.StatusForbidden {
			t.Errorf("an unforwarded request on the internal listener: %d %v, want 403", status, err)
		}
		if n := ordersOf(); n != 0 {
			t.Fatalf("the attacks created %d orders", n)
		}
		// The control: orders-2's own certificate forwards the same create.
		status, err = send(attacker(t, own(orders2)), url, body, signedForward(t, "orders-2", "/v1/orders", "peer-attack-control", body))
		if err != nil || status != http.StatusCreated {
			t.Fatalf("orders-2 forwarding to orders-1's internal listener: %d %v, want 201", status, err)
		}
		if n := ordersOf(); n != 1 {
			t.Fatalf("%d orders after the control, want 1", n)
		}
	})

	t.Run("orders public listener", func(t *testing.T) {
		// A forwarded claim signed with the real secret, sent to orders-1's
		// public port. A trusted claim is served where it lands (orders-1);
		// the public port drops it and routes the create to the customer's
		// owner, so a customer of orders-2 is served by orders-2.
		for i := range 50 {
			customer := fmt.Sprintf("edge-%02d", i)
			body, _ := json.Marshal(newOrder(customer))
			req, _ := newRequest(http.MethodPost, s.orders.urls[0]+"/v1/orders", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range signedForward(t, "orders-2", "/v1/orders", "edge-"+customer, body) {
				req.Header.Set(k, v)
			}
			r := do(req)
			if r.Err != nil || r.Status != http.StatusCreated {
				t.Fatalf("%s: %d %v %s", customer, r.Status, r.Err, r.Body)
			}
			if r.Header.Get("Payonce-Instance") == "orders-2" {
				return
			}
		}
		t.Fatal("50 creates with a signed forwarded claim were all served by orders-1: the claim was trusted on the public port")
	})

	t.Run("payments hand-over routes", func(t *testing.T) {
		orderID := "22222222-2222-4222-8222-222222222222"
		ev := testSeal.SealOrderCreated(events.OrderCreatedEvent{EventID: "evt-peer-attack", OrderID: orderID,
			Caller: "shop", CustomerID: "cust-peer-attack", Amount: 1234, Currency: "EUR", Card: "4242424242424242", OccurredAt: time.Now().UTC()})
		body, _ := json.Marshal(ev)
		peer := map[string]string{"Authorization": "Bearer " + peerAPIKey, partition.ForwardedHeader: "payments-2"}
		charged := func() int { return len(s.bank.ledger(t, "capture", events.PaymentIDForOrder(orderID))) }
		// The public port: 404 even with the peer key.
		if status, err := send(&http.Client{Timeout: 10 * time.Second}, s.payments.urls[0]+"/internal/v1/order-payments", body, peer); err != nil || status != http.StatusNotFound {
			t.Errorf("the hand-over route on the public port: %d %v, want 404", status, err)
		}
		for name, files := range map[string]*identity.Files{
			"no certificate":                       nil,
			"a payments certificate of another CA": &foreignPayments,
			"orders-1's certificate":               own(orders1),
		} {
			for _, internal := range s.payments.internalURLs {
				status, err := send(attacker(t, files), internal+"/internal/v1/order-payments", body, peer)
				if err == nil && status != http.StatusForbidden {
					t.Errorf("%s at %s: %d, want a refused handshake or 403", name, internal, status)
				}
			}
		}
		if n := charged(); n != 0 {
			t.Fatalf("the attacks charged the bank %d times", n)
		}
		if n := dbCount(t, s.payments.dbURL, `SELECT count(*) FROM payments WHERE order_id = $1`, orderID); n != 0 {
			t.Fatalf("the attacks wrote %d payments", n)
		}
		// The control: payments-2's own certificate hands the order over.
		var statuses []int
		for _, internal := range s.payments.internalURLs {
			status, err := send(attacker(t, own(payments2)), internal+"/internal/v1/order-payments", body, peer)
			if err != nil {
				t.Fatalf("payments-2 at %s: %v", internal, err)
			}
			statuses = append(statuses, status)
		}
		eventually(t, 30*time.Second, fmt.Sprintf("the handed-over order to be charged once (answers %v)", statuses), func() bool { return charged() == 1 })
	})

	t.Run("bank payment API", func(t *testing.T) {
		charge := []byte(`{"amount":100,"currency":"EUR","card":"4242424242424242","reference":"bank-attack","capture":true}`)
		for name, files := range map[string]*identity.Files{
			"no certificate":         nil,
			"orders-1's certificate": own(orders1),
			"payments of another CA": &foreignPayments,
		} {
			if status, err := send(attacker(t, files), s.bank.apiURL+"/v1/authorizations", charge, map[string]string{"Idempotency-Key": "bank-attack-" + name}); err == nil {
				t.Errorf("%s: the bank answered %d, want a refused handshake", name, status)
			}
		}
		if status, err := send(&http.Client{Timeout: 10 * time.Second}, strings.Replace(s.bank.apiURL, "https", "http", 1)+"/v1/authorizations", charge, map[string]string{"Idempotency-Key": "bank-attack-plain"}); err == nil && status/100 == 2 {
			t.Errorf("plain HTTP charged: %d", status)
		}
		if n := len(s.bank.ledger(t, "", "bank-attack")); n != 0 {
			t.Fatalf("the attacks reached the bank's ledger %d times", n)
		}
	})
}
