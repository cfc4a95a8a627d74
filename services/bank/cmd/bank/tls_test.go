package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

// issue writes id's certificate from ca into dir (with ca.crt).
func issue(t *testing.T, ca *identity.CA, dir string, id identity.ID) identity.Files {
	t.Helper()
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	f, err := ca.WriteParty(dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPaymentAPIOverMutualTLS: with TLS_* the bank's payment API answers
// payments instances only. A caller with no certificate, with an orders
// instance's certificate from the bank's own CA, or with a payments
// certificate from another CA is refused in the handshake and charges
// nothing (the ledger, read on the plain admin listener, stays empty); a
// payments instance charges. A bank given TLS_* without BANK_ADMIN_ADDR
// refuses to start.
func TestPaymentAPIOverMutualTLS(t *testing.T) {
	ca, err := identity.NewCA("bank test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.NewCA("another CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bankFiles := issue(t, ca, dir, identity.ID{Service: identity.Bank, Instance: "bank"})
	payments := issue(t, ca, dir, identity.ID{Service: identity.Payments, Instance: "payments-1"})
	orders := issue(t, ca, dir, identity.ID{Service: identity.Orders, Instance: "orders-1"})
	foreign := issue(t, other, t.TempDir(), identity.ID{Service: identity.Payments, Instance: "payments-1"})
	tlsEnv := map[string]string{"TLS_CERT_FILE": bankFiles.Cert, "TLS_KEY_FILE": bankFiles.Key, "TLS_CA_FILE": bankFiles.CA}

	env := map[string]string{"BANK_ADDR": "127.0.0.1:0"}
	for k, v := range tlsEnv {
		env[k] = v
	}
	if err := run(context.Background(), []string{"bank"}, func(k string) string { return env[k] }, io.Discard); !errors.Is(err, errTLSNeedsAdmin) {
		t.Fatalf("TLS without BANK_ADMIN_ADDR: %v, want %v", err, errTLSNeedsAdmin)
	}

	env["BANK_ADMIN_ADDR"] = "127.0.0.1:0"
	bank := startBank(t, env)
	public, admin := bank.public, bank.admin

	client := func(f identity.Files, trust string) *http.Client {
		t.Helper()
		c, err := identity.HTTPClient(f, 10*time.Second, identity.Bank)
		if err != nil {
			t.Fatal(err)
		}
		if trust != "" { // present f's certificate, but trust the bank's CA
			pool, err := identity.ClientConfig(identity.Files{Cert: f.Cert, Key: f.Key, CA: trust}, identity.Bank)
			if err != nil {
				t.Fatal(err)
			}
			c.Transport.(*http.Transport).TLSClientConfig.RootCAs = pool.RootCAs
		}
		return c
	}
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: client(payments, "").Transport.(*http.Transport).TLSClientConfig.Clone()}}
	noCert.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil

	charge := func(c *http.Client, key string) (int, error) {
		req, _ := http.NewRequest("POST", "https://"+public+"/v1/authorizations",
			strings.NewReader(`{"amount":100,"currency":"EUR","card":"4242424242424242","reference":"`+key+`","capture":true}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	ledger := func(reference string) int {
		t.Helper()
		resp, err := http.Get("http://" + admin + "/v1/ledger?kind=capture&reference=" + reference)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l struct{ Entries []json.RawMessage }
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&l) != nil {
			t.Fatalf("ledger on the admin listener: %s", resp.Status)
		}
		return len(l.Entries)
	}

	for name, c := range map[string]*http.Client{
		"no client certificate":                noCert,
		"an orders certificate":                client(orders, ""),
		"a payments certificate of another CA": client(foreign, bankFiles.CA),
		"plain HTTP":                           {Timeout: 10 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			key := "attack-" + strings.ReplaceAll(name, " ", "-")
			var status int
			var err error
			if name == "plain HTTP" {
				var resp *http.Response
				if resp, err = c.Post("http://"+public+"/v1/authorizations", "application/json", strings.NewReader(`{}`)); err == nil {
					status = resp.StatusCode
					resp.Body.Close()
				}
			} else {
				status, err = charge(c, key)
			}
			if err == nil && status/100 == 2 {
				t.Fatalf("%s charged: %d", name, status)
			}
			t.Logf("refused: %d %v", status, err)
			if n := ledger(key); n != 0 {
				t.Fatalf("the ledger shows %d entries for %s", n, key)
			}
		})
	}
	if status, err := charge(client(payments, ""), "honest-1"); err != nil || status != 201 {
		t.Fatalf("a payments instance's charge: %d %v", status, err)
	}
	if n := ledger("honest-1"); n != 1 {
		t.Fatalf("the ledger shows %d entries for the honest charge, want 1", n)
	}
	resp, err := http.Get("http://" + admin + "/admin/faults")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("fault switches on the admin listener: %v %v", resp, err)
	}
	resp.Body.Close()

	bank.stop()
}
