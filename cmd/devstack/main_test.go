package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/payonce/payonce/internal/identity"
)

// TestDevstackRunsTheTopologyAndStopsCleanly starts the whole dev stack on
// free ports, as `make dev` does, and uses it as the README does: an order
// created through the orders API with an Idempotency-Key gets paid through
// NATS, payments, the coordinator's lock and the bank, and its trace is
// printed as one tree. Then it cancels the stack (what Ctrl-C does) and
// checks that no process it started is left and every port is closed.
func TestDevstackRunsTheTopologyAndStopsCleanly(t *testing.T) {
	s := startStack(t)

	for _, name := range []string{"orders database", "payments database", "nats", "bank",
		"coordinator-c1", "coordinator-c2", "coordinator-c3", "payments-1", "payments-2", "orders-1", "orders-2"} {
		if s.urls[name] == "" {
			t.Fatalf("devstack printed no URL for %q; printed %v", name, s.urls)
		}
	}
	for _, name := range []string{"coordinator-c1", "coordinator-c2", "coordinator-c3", "bank", "payments-1", "payments-2", "orders-1", "orders-2"} {
		if s.pids[name] == 0 {
			t.Fatalf("devstack printed no pid for %q; printed %v", name, s.pids)
		}
		pidFile, err := os.ReadFile(filepath.Join(s.stateDir, name+".pid"))
		if err != nil || strings.TrimSpace(string(pidFile)) != fmt.Sprint(s.pids[name]) {
			t.Fatalf("pid file of %s holds %q (%v), want %d", name, pidFile, err, s.pids[name])
		}
	}
	ctx := context.Background()
	for _, name := range []string{"orders database", "payments database"} {
		conn, err := pgx.Connect(ctx, s.urls[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var n int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&n); err != nil {
			t.Fatalf("%s is not migrated: %v", name, err)
		}
		conn.Close(ctx)
	}
	// NATS admits parties with a certificate from the stack's CA only.
	if nc, err := nats.Connect(s.urls["nats"], nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("nats accepted an anonymous connection")
	}
	adminTLS, err := identity.ClientConfig(identity.PartyFiles(s.pkiDir, identity.AdminCLI), identity.NATS)
	if err != nil {
		t.Fatalf("admin certificate in %q: %v", s.pkiDir, err)
	}
	nc, err := nats.Connect(s.urls["nats"], nats.Secure(adminTLS))
	if err != nil {
		t.Fatalf("nats as admin: %v", err)
	}
	nc.Close()

	// An order, as the README's first curl command creates it.
	body := `{"customer_id":"cust-devstack","currency":"EUR","card":"4242424242424242","lines":[{"sku":"espresso","quantity":2}]}`
	status, resp := httpJSON(t, "POST", s.urls["orders-1"]+"/v1/orders", "devstack-test-order", body)
	if status != http.StatusCreated {
		t.Fatalf("create order: %d %s", status, resp)
	}
	var order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Total  int64  `json:"total"`
	}
	if err := json.Unmarshal(resp, &order); err != nil || order.ID == "" || order.Total != 2*2450 {
		t.Fatalf("create order answered %s (%v)", resp, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	poll := time.NewTicker(100 * time.Millisecond)
	defer poll.Stop()
	for order.Status != "paid" {
		if time.Now().After(deadline) {
			t.Fatalf("order %s still %q after 60s", order.ID, order.Status)
		}
		// Ask the other instance: either one answers for any order.
		status, resp = httpJSON(t, "GET", s.urls["orders-2"]+"/v1/orders/"+order.ID, "", "")
		if status != http.StatusOK {
			t.Fatalf("get order: %d %s", status, resp)
		}
		if err := json.Unmarshal(resp, &order); err != nil {
			t.Fatal(err)
		}
		if order.Status == "payment_failed" {
			t.Fatalf("order payment failed: %s", resp)
		}
		if order.Status != "paid" {
			<-poll.C
		}
	}

	// The sink prints the order's trace once it is quiet: one tree from the
	// POST to the order update, through every service on a payment's path.
	// Under partition leases (the default, ADR 0070) the coordinator is not
	// on it: the lease check is local, an attribute of payments.settle.
	want := []string{"POST /v1/orders", "publish orders.created", "process orders.created", "payments.settle",
		"bank POST /v1/authorizations", "process payments.succeeded", "orders.apply_payment_outcome"}
	var tree string
	found, err := s.out.waitFor(60*time.Second, func(lines []string) bool {
		for _, t := range printedTraces(lines) {
			if strings.Contains(t, "POST /v1/orders") {
				tree = t
			}
		}
		for _, w := range want {
			if !strings.Contains(tree, w) {
				return false
			}
		}
		return strings.Contains(tree, "services bank,orders,payments")
	})
	if !found {
		t.Fatalf("no printed trace tree holds all of %q (%v); last tree of the order:\n%s", want, err, tree)
	}
	t.Logf("the order's trace as devstack printed it:\n%s", tree)

	addrs := s.addrs(t)
	s.stop(t)

	for name, pid := range s.pids {
		if processAlive(pid) {
			t.Errorf("%s (pid %d) still runs after devstack stopped", name, pid)
		}
		if _, err := os.Stat(filepath.Join(s.stateDir, name+".pid")); err == nil {
			t.Errorf("pid file of %s left behind", name)
		}
	}
	if left := childrenOf(t, os.Getpid()); len(left) > 0 {
		t.Errorf("child processes left after devstack stopped: %v", left)
	}
	for _, addr := range addrs {
		if dialable(addr) {
			t.Errorf("%s still accepts connections after devstack stopped", addr)
		}
	}
	if !strings.Contains(s.out.text(), "devstack: stopped; nothing left running") {
		t.Error("devstack did not report that it stopped")
	}
}

// TestConfigRejectsBadPorts: a mistyped port list is an error naming the
// variable, not a stack on surprising ports.
func TestConfigRejectsBadPorts(t *testing.T) {
	for _, tc := range []struct{ key, value, want string }{
		{"DEVSTACK_ORDERS_PORTS", "8081,x", "DEVSTACK_ORDERS_PORTS"},
		{"DEVSTACK_COORDINATOR_PORTS", "7001,7002", "want 3 ports"},
		{"DEVSTACK_TRACES", "zipkin", "DEVSTACK_TRACES"},
		{"DEVSTACK_BANK_PORT", "eighty", "DEVSTACK_BANK_PORT"},
	} {
		env := map[string]string{tc.key: tc.value}
		_, err := loadConfig(func(k string) string { return env[k] }, t.TempDir())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: got %v, want an error mentioning %q", tc.key, tc.value, err, tc.want)
		}
	}
	cfg, err := loadConfig(func(string) string { return "" }, "/repo")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.OrdersPorts[0] != 8080 || cfg.PaymentsPorts[1] != 8091 || cfg.BankPort != 8099 || cfg.OTLPPort != 4318 ||
		cfg.CoordinatorPorts[2] != 8103 || cfg.RaftPorts[0] != 7101 || cfg.PostgresPort != 55432 || cfg.NATSPort != 4222 {
		t.Errorf("defaults changed (the README's port table and curl commands depend on them): %+v", cfg)
	}
}

// httpJSON sends one request as the demo caller and returns the status and body.
func httpJSON(t *testing.T, method, url, idempotencyKey, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+DemoAPIKey)
	req.Header.Set("Content-Type", "application/json")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}
