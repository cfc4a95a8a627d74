//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/events"
)

// DatabaseOutage is how long TestDatabaseStoppedUnderLoad keeps PostgreSQL
// stopped: the 60 s, longer than any retry budget the services had
// before unlimited redelivery (about 33 s).
const DatabaseOutage = 60 * time.Second

// TestDatabaseStoppedUnderLoad stops the PostgreSQL container (both
// services' databases) for a minute while clients keep ordering, with a
// slow bank so charges are in flight when it goes and two customers
// cancelling theirs, then starts it again, and counts: every accepted order
// reaches paid (the cancelled ones cancelled and refunded), each payment is
// captured exactly once at the bank, and nothing is in the dead-letter
// stream or counted dead-lettered by a consumer.
func TestDatabaseStoppedUnderLoad(t *testing.T) {
	stack(t)
	run := randomHex(4)
	setBankFaults(t, map[string]any{"latency_ms": 3000})
	t.Cleanup(func() { setBankFaults(t, map[string]any{}) })

	// Before the outage: orders whose charges are at the slow bank, the
	// first two cancelled by their customers the moment they are accepted,
	// while their charges are still at the bank. (Cancelling only after
	// all six were created let the first charge finish first at load 60:
	// 409, the order was already paid.)
	var accepted []string
	for i := range 6 {
		id := createOrderRetrying(t, fmt.Sprintf("db-%s-%d", run, i), fmt.Sprintf("db-%s-%d", run, i%3), time.Minute)
		accepted = append(accepted, id)
		if i < 2 {
			if r := call(t, "POST", orders1+"/v1/orders/"+id+"/cancel", demoAPIKey, "cancel-"+id, nil, nil); r.status != 200 {
				t.Fatalf("cancel %s: %d %s", id, r.status, r.body)
			}
		}
	}
	cancelled := accepted[:2]

	// Load through the outage: clients keep sending new orders, each
	// retried with its own key until it is accepted, as a client would.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				key := fmt.Sprintf("db-load-%s-%d-%d", run, c, i)
				id := createOrderRetrying(t, key, fmt.Sprintf("db-load-%s-%d", run, c), DatabaseOutage+3*time.Minute)
				if id == "" {
					return
				}
				mu.Lock()
				accepted = append(accepted, id)
				mu.Unlock()
			}
		}()
	}

	stopped := time.Now()
	if out, err := dockerCmd("stop", "postgres"); err != nil {
		t.Fatalf("docker stop postgres: %v %s", err, out)
	}
	// The outage itself: its length is the point.
	<-time.After(DatabaseOutage - time.Since(stopped))
	if out, err := dockerCmd("start", "postgres"); err != nil {
		t.Fatalf("docker start postgres: %v %s", err, out)
	}
	waitHealthy(t, "postgres")
	back := time.Now()
	t.Logf("postgres stopped for %s", back.Sub(stopped).Round(time.Second))
	wg.Wait()
	if t.Failed() {
		return
	}

	for i, id := range accepted {
		want := "paid"
		if i < len(cancelled) {
			want = "cancelled"
		}
		eventually(t, 4*time.Minute, "order "+id+" to be "+want, func() (bool, string) {
			g := call(t, "GET", orders1+"/v1/orders/"+id, demoAPIKey, "", nil, nil)
			var o struct{ Status string }
			if g.status != 200 {
				return false, fmt.Sprintf("%d %s", g.status, g.body)
			}
			g.decode(t, &o)
			return o.Status == want, o.Status
		})
	}
	for _, id := range cancelled {
		eventually(t, 2*time.Minute, "cancelled order "+id+" refunded", func() (bool, string) {
			n := ledgerEntries(t, "refund", events.PaymentIDForOrder(id))
			return n == 1, fmt.Sprintf("%d refunds", n)
		})
	}
	t.Logf("%d orders (%d cancelled) settled %s after postgres came back", len(accepted), len(cancelled), time.Since(back).Round(time.Second))
	for _, id := range accepted {
		if n := ledgerEntries(t, "capture", events.PaymentIDForOrder(id)); n != 1 {
			t.Errorf("order %s: %d captures at the bank, want exactly 1", id, n)
		}
	}
	for _, id := range cancelled {
		if n := ledgerEntries(t, "refund", events.PaymentIDForOrder(id)); n != 1 {
			t.Errorf("cancelled order %s: %d refunds at the bank, want exactly 1", id, n)
		}
	}
	assertNoDeadLetters(t)
}

// createOrderRetrying creates an order with key, retrying (alternating
// instances, on a ticker, never a fixed sleep per attempt) until it is
// accepted or patience runs out; it returns the order's id.
func createOrderRetrying(t *testing.T, key, customer string, patience time.Duration) string {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(patience)
	var last string
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		base := []string{orders1, orders2}[attempt%2]
		r, err := send("POST", base+"/v1/orders", demoAPIKey, key, orderBody(customer, 1), nil)
		if err == nil && r.status == 201 {
			var o struct{ ID string }
			if json.Unmarshal(r.body, &o) == nil && o.ID != "" {
				return o.ID
			}
		}
		last = fmt.Sprintf("%d %.200s %v", r.status, r.body, err)
		<-tick.C
	}
	t.Errorf("order %s never accepted within %s; last answer %s", key, patience, last)
	return ""
}

func setBankFaults(t *testing.T, faults map[string]any) {
	t.Helper()
	if r := call(t, "PUT", bank+"/admin/faults", "", "", faults, nil); r.status != 200 {
		t.Fatalf("set bank faults: %d %s", r.status, r.body)
	}
}

// ledgerEntries counts the bank's ledger entries of kind for reference.
func ledgerEntries(t *testing.T, kind, reference string) int {
	t.Helper()
	g := call(t, "GET", bank+"/v1/ledger?kind="+kind+"&reference="+reference, "", "", nil, nil)
	var ledger struct{ Entries []json.RawMessage }
	g.decode(t, &ledger)
	return len(ledger.Entries)
}

// assertNoDeadLetters checks the DEADLETTER stream on every NATS node
// (each holds a replica) and the consumers' own dead-letter counters.
func assertNoDeadLetters(t *testing.T) {
	t.Helper()
	for _, monitor := range natsMonitors {
		g := call(t, "GET", monitor+"/jsz?accounts=true&streams=true", "", "", nil, nil)
		var jsz struct {
			AccountDetails []struct {
				StreamDetail []struct {
					Name  string
					State struct{ Messages int }
				} `json:"stream_detail"`
			} `json:"account_details"`
		}
		g.decode(t, &jsz)
		found := false
		for _, a := range jsz.AccountDetails {
			for _, s := range a.StreamDetail {
				if s.Name == "DEADLETTER" {
					found = true
					if s.State.Messages != 0 {
						t.Errorf("%s: %d messages in DEADLETTER, want none", monitor, s.State.Messages)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s holds no DEADLETTER stream (want a replica on every node): %.300s", monitor, g.body)
		}
	}
	if n := promValue(t, `sum(payonce_events_consumed_total{outcome="dead_lettered"})`); n != 0 {
		t.Errorf("the consumers counted %v dead letters, want none", n)
	}
}

// dockerCmd runs a docker command (stop, start, ...) on a service's container.
func dockerCmd(verb, service string) (string, error) {
	id, err := container(service)
	if err != nil {
		return "", err
	}
	out, err := exec.Command("docker", verb, id).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
