//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDuplicateStormAndKillsUnderLoad runs against the compose stack what
// the integration tests run against local processes: a storm of identical
// requests makes one order, and SIGKILLing the Raft leader's container, a
// payments container and one NATS node while clients keep ordering loses
// nothing and charges nothing twice; the killed containers then start
// again and rejoin (the NATS node catches its stream replicas up).
func TestDuplicateStormAndKillsUnderLoad(t *testing.T) {
	stack(t)
	run := randomHex(4)

	// A duplicate storm: 40 identical creates at once, on both instances.
	storm := orderBody("storm-"+run, 1)
	key := "storm-key-" + run
	var wg sync.WaitGroup
	results := make([]response, 40)
	errs := make([]error, 40)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := []string{orders1, orders2}[i%2]
			results[i], errs[i] = send("POST", base+"/v1/orders", demoAPIKey, key, storm, nil)
		}()
	}
	wg.Wait()
	var first []byte
	for i, r := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		switch r.status {
		case 201:
			if first == nil {
				first = r.body
			} else if !bytes.Equal(first, r.body) {
				t.Fatalf("two different 201 bodies for one key:\n%s\n%s", first, r.body)
			}
		case 409:
		default:
			t.Fatalf("storm request %d: %d %s", i, r.status, r.body)
		}
	}
	if first == nil {
		t.Fatal("no storm request got 201")
	}
	l := call(t, "GET", orders1+"/v1/customers/storm-"+run+"/orders", demoAPIKey, "", nil, nil)
	var list struct{ Orders []struct{ ID string } }
	l.decode(t, &list)
	if len(list.Orders) != 1 {
		t.Fatalf("the storm made %d orders, want 1", len(list.Orders))
	}

	// Load, with the coordinator leader, payments-2 and nats-2 killed a third in.
	leader := coordinatorLeader(t)
	const clients, perClient = 4, 15
	var mu sync.Mutex
	accepted := map[string]string{} // key -> order id
	var killOnce sync.Once
	var killErr error
	var done int
	// Clients back off between retries on a shared ticker: a retry waits
	// for the next tick, not for a fixed sleep of its own.
	backoff := time.NewTicker(200 * time.Millisecond)
	defer backoff.Stop()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perClient {
				k := fmt.Sprintf("load-%s-%d-%d", run, c, i)
				body := orderBody(fmt.Sprintf("load-%s-%d", run, (c*perClient+i)%11), 1)
				deadline := time.Now().Add(90 * time.Second)
				for attempt := 0; ; attempt++ {
					base := []string{orders1, orders2}[(c+attempt)%2]
					r, err := send("POST", base+"/v1/orders", demoAPIKey, k, body, nil)
					if err == nil && r.status == 201 {
						var o struct{ ID string }
						_ = json.Unmarshal(r.body, &o)
						mu.Lock()
						accepted[k] = o.ID
						done++
						if done == clients*perClient/3 {
							killOnce.Do(func() {
								killErr = errors.Join(dockerKill(leader), dockerKill("payments-2"), dockerKill("nats-2"))
							})
						}
						mu.Unlock()
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s never accepted; last %d %s %v", k, r.status, r.body, err)
						return
					}
					<-backoff.C
				}
			}
		}()
	}
	wg.Wait()
	if killErr != nil {
		t.Fatal(killErr)
	}
	if t.Failed() {
		return
	}
	if len(accepted) != clients*perClient {
		t.Fatalf("%d orders accepted, want %d", len(accepted), clients*perClient)
	}
	// The killed containers are started again, as an orchestrator would
	// restart a crashed process (Docker does not restart a killed container
	// by its restart policy), and become healthy: the coordinator rejoins
	// the cluster from its Raft log, payments-2 rejoins the ring.
	for _, service := range []string{leader, "payments-2", "nats-2"} {
		if err := dockerStart(service); err != nil {
			t.Fatal(err)
		}
	}
	for _, service := range []string{leader, "payments-2", "nats-2"} {
		waitHealthy(t, service)
	}
	// Every accepted order is paid, and each payment was captured once.
	for k, id := range accepted {
		var o struct {
			Status    string `json:"status"`
			PaymentID string `json:"payment_id"`
		}
		eventually(t, 90*time.Second, "order "+id+" ("+k+") to be paid", func() (bool, string) {
			g := call(t, "GET", orders1+"/v1/orders/"+id, demoAPIKey, "", nil, nil)
			g.decode(t, &o)
			return o.Status == "paid", o.Status
		})
		if o.PaymentID == "" {
			t.Fatalf("paid order %s names no payment", id)
		}
		g := call(t, "GET", bank+"/v1/ledger?kind=capture&reference="+o.PaymentID, "", "", nil, nil)
		var ledger struct{ Entries []json.RawMessage }
		g.decode(t, &ledger)
		if len(ledger.Entries) != 1 {
			t.Fatalf("payment %s of order %s captured %d times, want 1", o.PaymentID, id, len(ledger.Entries))
		}
	}
	t.Logf("%d orders under load, leader %s, payments-2 and nats-2 killed mid-way: all paid, each captured once", len(accepted), leader)
}

func orderBody(customer string, quantity int) map[string]any {
	return map[string]any{"customer_id": customer, "currency": "EUR", "card": "4242424242424242",
		"lines": []map[string]any{{"sku": "espresso", "quantity": quantity}}}
}

// coordinatorLeader returns the compose service of the Raft leader.
func coordinatorLeader(t *testing.T) string {
	t.Helper()
	var c struct {
		LeaderID string `json:"leader_id"`
	}
	eventually(t, 30*time.Second, "a coordinator leader", func() (bool, string) {
		r := call(t, "GET", coordinators[0]+"/v1/cluster", "", "", nil, nil)
		r.decode(t, &c)
		return c.LeaderID != "", string(r.body)
	})
	return "coordinator-" + strings.TrimPrefix(c.LeaderID, "c")
}

func project() string {
	if p := os.Getenv("PAYONCE_E2E_PROJECT"); p != "" {
		return p
	}
	return "payonce"
}

// container finds the container of a compose service by the labels both
// docker-compose 1.x and the compose v2 plugin set.
func container(service string) (string, error) {
	out, err := exec.Command("docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project="+project(),
		"--filter", "label=com.docker.compose.service="+service).Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" || strings.Contains(id, "\n") {
		return "", fmt.Errorf("container of %s: %q %v", service, id, err)
	}
	return id, nil
}

// dockerKill SIGKILLs a service's container: a crash, not a stop.
func dockerKill(service string) error {
	id, err := container(service)
	if err != nil {
		return err
	}
	if out, err := exec.Command("docker", "kill", id).CombinedOutput(); err != nil {
		return fmt.Errorf("docker kill %s: %v %s", service, err, out)
	}
	return nil
}

// dockerStart starts a service's stopped container again.
func dockerStart(service string) error {
	id, err := container(service)
	if err != nil {
		return err
	}
	if out, err := exec.Command("docker", "start", id).CombinedOutput(); err != nil {
		return fmt.Errorf("docker start %s: %v %s", service, err, out)
	}
	return nil
}

func waitHealthy(t *testing.T, service string) {
	t.Helper()
	id, err := container(service)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 120*time.Second, service+" to be healthy again", func() (bool, string) {
		out, err := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id).Output()
		s := strings.TrimSpace(string(out))
		return err == nil && s == "running healthy", s
	})
}
