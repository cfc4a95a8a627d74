//go:build e2e

// Package e2e checks a running docker compose stack (deploy/docker-compose.yml)
// from the outside, through the ports it publishes on 127.0.0.1: every
// service is ready, a retried payment is replayed, and an order is paid in
// one trace that Jaeger holds from the orders edge to the bank.
//
// The tests carry the e2e build tag, so `go test ./...` does not build them;
// deploy/e2e.sh (make e2e-docker) brings the stack up, runs them with
// `-tags e2e` and PAYONCE_E2E=compose, and tears the stack down again.
package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

// The published ports and demo key of deploy/docker-compose.yml.
const (
	orders1    = "http://127.0.0.1:8080"
	orders2    = "http://127.0.0.1:8081"
	payments1  = "http://127.0.0.1:8090"
	payments2  = "http://127.0.0.1:8091"
	bank       = "http://127.0.0.1:8099"
	jaeger     = "http://127.0.0.1:16686"
	demoAPIKey = "payonce-demo-key-1"
)

// coordinators speak HTTPS only and answer only callers with a certificate
// of the stack's CA: client presents the admin identity's (certsDir).
var coordinators = []string{"https://127.0.0.1:8101", "https://127.0.0.1:8102", "https://127.0.0.1:8103"}

// certsDir holds the compose stack's PKI (the certs job's output), copied
// out of the certs volume by deploy/e2e.sh (PAYONCE_E2E_CERTS).
var certsDir = os.Getenv("PAYONCE_E2E_CERTS")

// natsMonitors are the monitoring ports of the three NATS nodes.
var natsMonitors = []string{"http://127.0.0.1:8222", "http://127.0.0.1:8223", "http://127.0.0.1:8224"}

// stack refuses to run without the stack deploy/e2e.sh brings up: the
// build tag keeps these tests out of a plain `go test ./...`, and a run with
// the tag but without the stack is a mistake, not a reason to pass.
func stack(t *testing.T) {
	t.Helper()
	if os.Getenv("PAYONCE_E2E") != "compose" {
		t.Fatal("PAYONCE_E2E is not \"compose\": run these tests with deploy/e2e.sh (make e2e-docker)")
	}
	if clientErr != nil {
		t.Fatalf("the operator's client: %v (PAYONCE_E2E_CERTS=%q: deploy/e2e.sh copies the stack's certificates there)", clientErr, certsDir)
	}
}

func TestEveryServiceIsReady(t *testing.T) {
	stack(t)
	urls := []string{payments1 + "/readyz", payments2 + "/readyz", bank + "/readyz", jaeger + "/api/services"}
	// Each NATS node is healthy: in the cluster, with a JetStream leader,
	// its replicas current.
	for _, m := range natsMonitors {
		urls = append(urls, m+"/healthz")
	}
	for _, c := range coordinators {
		urls = append(urls, c+"/readyz")
	}
	urls = append(urls, orders1+"/readyz", orders2+"/readyz")
	for _, url := range urls {
		if r := call(t, "GET", url, "", "", nil, nil); r.status != 200 {
			t.Errorf("GET %s: %d %s", url, r.status, r.body)
		}
	}
}

// TestStreamsAreReplicatedOnThreeNodes: compose runs NATS as a 3-node
// JetStream cluster, and every stream payonce uses has 3 replicas (R3), a
// leader and two current followers, so an acknowledged event is on two
// nodes before the outbox counts it published.
func TestStreamsAreReplicatedOnThreeNodes(t *testing.T) {
	stack(t)
	g := call(t, "GET", natsMonitors[0]+"/jsz?accounts=true&streams=true&config=true", "", "", nil, nil)
	var jsz struct {
		AccountDetails []struct {
			StreamDetail []struct {
				Name   string
				Config struct {
					Replicas int `json:"num_replicas"`
				}
				Cluster struct {
					Leader   string
					Replicas []struct{ Name string }
				}
			} `json:"stream_detail"`
		} `json:"account_details"`
	}
	g.decode(t, &jsz)
	seen := map[string]bool{}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.StreamDetail {
			seen[s.Name] = true
			if s.Config.Replicas != 3 || s.Cluster.Leader == "" || len(s.Cluster.Replicas) != 2 {
				t.Errorf("stream %s: %d replicas configured, leader %q, %d followers; want R3 with a leader and 2 followers",
					s.Name, s.Config.Replicas, s.Cluster.Leader, len(s.Cluster.Replicas))
			}
		}
	}
	for _, name := range []string{"ORDERS", "PAYMENTS", "DEADLETTER"} {
		if !seen[name] {
			t.Errorf("stream %s is not on nats-1: %.300s", name, g.body)
		}
	}
}

// TestPaymentRetryIsReplayed: the same Idempotency-Key sent again, to the
// same instance or to the other one, gets the stored answer back, marked
// Idempotent-Replayed, and the payment exists once.
func TestPaymentRetryIsReplayed(t *testing.T) {
	stack(t)
	key := "e2e-pay-" + randomHex(8)
	body := map[string]any{"customer_id": "e2e-" + randomHex(4), "amount": 1250, "currency": "EUR", "card": "4242424242424242"}

	first := call(t, "POST", payments1+"/v1/payments", demoAPIKey, key, body, nil)
	if first.status != 201 || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first POST: %d (replayed %q) %s", first.status, first.header.Get("Idempotent-Replayed"), first.body)
	}
	var p struct{ ID, Status string }
	first.decode(t, &p)
	if p.ID == "" || p.Status != "succeeded" {
		t.Fatalf("first POST made %+v, want a succeeded payment", p)
	}
	for _, base := range []string{payments1, payments2} {
		again := call(t, "POST", base+"/v1/payments", demoAPIKey, key, body, nil)
		if again.status != first.status || again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, first.body) {
			t.Fatalf("retry on %s: %d, Idempotent-Replayed %q, body %s; want the first answer replayed",
				base, again.status, again.header.Get("Idempotent-Replayed"), again.body)
		}
	}
	got := call(t, "GET", payments2+"/v1/payments/"+p.ID, demoAPIKey, "", nil, nil)
	if got.status != 200 || !strings.Contains(string(got.body), p.ID) {
		t.Fatalf("GET the payment from the other instance: %d %s", got.status, got.body)
	}
}

// TestOrderIsPaidInOneTrace: an order placed with a known trace id is paid
// over NATS, and Jaeger's HTTP API returns one trace with spans of orders,
// payments and the bank, ending with the order update. Under partition
// leases (ADR 0070, the default) the coordinator is not on a payment's
// path: the lease check is the partition and its token as attributes of
// payments.settle, and the trace has no lock span and no coordinator span.
func TestOrderIsPaidInOneTrace(t *testing.T) {
	stack(t)
	traceID := randomHex(16)
	traceparent := "00-" + traceID + "-" + randomHex(8) + "-01"
	order := map[string]any{
		"customer_id": "e2e-" + randomHex(4), "currency": "EUR", "card": "4242424242424242",
		"lines": []map[string]any{{"sku": "espresso", "quantity": 2}, {"sku": "cup", "quantity": 1}},
	}
	r := call(t, "POST", orders1+"/v1/orders", demoAPIKey, "e2e-order-"+randomHex(8), order, map[string]string{"traceparent": traceparent})
	if r.status != 201 {
		t.Fatalf("create order: %d %s", r.status, r.body)
	}
	var o struct{ ID, Status, PaymentID string }
	r.decode(t, &o)

	eventually(t, 60*time.Second, "order "+o.ID+" to be paid", func() (bool, string) {
		g := call(t, "GET", orders2+"/v1/orders/"+o.ID, demoAPIKey, "", nil, nil)
		g.decode(t, &o)
		return o.Status == "paid", fmt.Sprintf("%d %s", g.status, g.body)
	})

	want := []struct{ service, operation string }{
		{"orders", "POST /v1/orders"},
		{"orders", "publish orders.created"},
		{"payments", "process orders.created"},
		{"payments", "payments.settle"},
		{"payments", "bank POST"},
		{"bank", "POST"},
		{"payments", "publish payments.succeeded"},
		{"orders", "process payments.succeeded"},
	}
	var trace jaegerTrace
	eventually(t, 60*time.Second, "Jaeger to hold trace "+traceID+" across every service", func() (bool, string) {
		g := call(t, "GET", jaeger+"/api/traces/"+traceID, "", "", nil, nil)
		var resp struct{ Data []jaegerTrace }
		if g.status != 200 || json.Unmarshal(g.body, &resp) != nil || len(resp.Data) != 1 {
			return false, fmt.Sprintf("GET /api/traces/%s: %d %.300s", traceID, g.status, g.body)
		}
		trace = resp.Data[0]
		var missing []string
		for _, w := range want {
			if !trace.has(w.service, w.operation) {
				missing = append(missing, w.service+": "+w.operation)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v; have %v", missing, trace.operations())
	})
	t.Logf("trace %s: %d spans in services %v", traceID, len(trace.Spans), trace.services())
	if trace.has("coordinator", "") || trace.has("payments", "lock.") {
		t.Errorf("a payment under partition leases went to the coordinator: %v", trace.operations())
	}
	for _, sp := range trace.Spans {
		if sp.OperationName == "payments.settle" && (sp.tag("partition") == "" || sp.tag("partition.token") == "") {
			t.Errorf("payments.settle carries no lease check (partition, partition.token): %+v", sp.Tags)
		}
	}

	// The query the README shows: recent traces of a service.
	g := call(t, "GET", jaeger+"/api/traces?service=payments&limit=50&lookback=1h", "", "", nil, nil)
	var list struct{ Data []jaegerTrace }
	if err := json.Unmarshal(g.body, &list); err != nil || g.status != 200 || len(list.Data) == 0 {
		t.Fatalf("GET /api/traces?service=payments: %d %.300s", g.status, g.body)
	}
}

// jaegerTrace is the part of a trace in Jaeger's HTTP API (api/traces) the
// checks read.
type jaegerTrace struct {
	TraceID   string
	Spans     []jaegerSpan
	Processes map[string]struct{ ServiceName string }
}

type jaegerSpan struct {
	OperationName string
	ProcessID     string
	Tags          []struct {
		Key   string
		Value any
	}
}

// tag returns the span's attribute key as text ("" if it has none).
func (s jaegerSpan) tag(key string) string {
	for _, t := range s.Tags {
		if t.Key == key {
			return fmt.Sprint(t.Value)
		}
	}
	return ""
}

func (tr jaegerTrace) has(service, operationPrefix string) bool {
	for _, s := range tr.Spans {
		if tr.Processes[s.ProcessID].ServiceName == service && strings.HasPrefix(s.OperationName, operationPrefix) {
			return true
		}
	}
	return false
}

func (tr jaegerTrace) services() []string {
	var out []string
	for _, p := range tr.Processes {
		if !slices.Contains(out, p.ServiceName) {
			out = append(out, p.ServiceName)
		}
	}
	slices.Sort(out)
	return out
}

func (tr jaegerTrace) operations() []string {
	var out []string
	for _, s := range tr.Spans {
		out = append(out, tr.Processes[s.ProcessID].ServiceName+": "+s.OperationName)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// client is the operator's: with the admin identity's certificate (the
// coordinators' cluster routes answer it), and plain for every http:// URL.
var client, clientErr = partyClient(identity.AdminCLI)

// partyClient is an HTTP client presenting id's certificate from certsDir
// and trusting the stack's CA.
func partyClient(id identity.ID) (*http.Client, error) {
	if certsDir == "" {
		return &http.Client{Timeout: 10 * time.Second}, errors.New("PAYONCE_E2E_CERTS is not set")
	}
	return identity.HTTPClient(identity.PartyFiles(certsDir, id), 10*time.Second)
}

// call sends one request; a transport error fails the test. Use it on the
// test's goroutine only; load generators use send.
func call(t *testing.T, method, url, apiKey, idempotencyKey string, body any, header map[string]string) response {
	t.Helper()
	r, err := send(method, url, apiKey, idempotencyKey, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send sends one request and returns a transport error instead of failing.
func send(method, url, apiKey, idempotencyKey string, body any, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// eventually polls cond until it holds, failing the test with cond's last
// report once timeout has passed.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	poll := time.NewTicker(250 * time.Millisecond)
	defer poll.Stop()
	for {
		ok, report := cond()
		if ok {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("waited %s for %s: %s", timeout, what, report)
		case <-poll.C:
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
