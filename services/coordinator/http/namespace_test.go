package http_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
)

// paymentsLock is the coordinator lock payments takes for its partition 3
// (services/payments/coordinator.LockName of payments.PartitionName(3)).
const paymentsLock = "payments:payments-partition-3"

// TestLockNamesAreScopedByService is review F1 tried from the attacker's
// side on a cluster running with mutual TLS: orders' identity cannot take,
// queue for, keep alive, release, renew in a batch or read a payments lock
// (403 lock-not-in-namespace, through the leader and a follower), a
// payments identity cannot step outside its namespace either (another
// service's, a name with no namespace, a service whose name merely starts
// with "payments"), and through all of it payments-1 keeps its lease: same
// id, same token, and it still renews and releases it. The operator's
// identity may use any name.
func TestLockNamesAreScopedByService(t *testing.T) {
	c := coordinatortest.StartWith(t, 3, coordinatortest.Options{TLS: true})
	pki := c.PKI()
	leader := c.URL(c.WaitLeader(10 * time.Second))
	follower := c.URL(c.Follower())
	holder, sibling, orders, admin := pki.Client(payments1), pki.Client(payments2), pki.Client(orders1), pki.Client(identity.AdminCLI)

	got := call(t, holder, "POST", follower+"/v1/locks/"+paymentsLock+"/leases", `{"request_id":"p1","ttl_ms":30000}`)
	if got.status != 201 {
		t.Fatalf("payments-1 takes its partition lock: %d %s", got.status, got.body)
	}
	var l lease
	if err := json.Unmarshal(got.body, &l); err != nil {
		t.Fatal(err)
	}
	before := call(t, holder, "GET", leader+"/v1/locks/"+paymentsLock, "")
	if before.status != 200 || !strings.Contains(string(before.body), l.LeaseID) {
		t.Fatalf("the holder reads its lock: %d %s", before.status, before.body)
	}

	leasePath := "/v1/locks/" + paymentsLock + "/leases/" + l.LeaseID
	batch := func(lock string) string {
		return `{"leases":[{"lock":"` + lock + `","lease_id":"` + l.LeaseID + `"}]}`
	}
	refused := []struct {
		who            string
		client         string
		method, path   string
		body           string
		wantNoCreation string // a lock the attempt must not have created
	}{
		{"orders-1", "orders", "POST", "/v1/locks/" + paymentsLock + "/leases", `{"request_id":"o1","ttl_ms":30000}`, ""},
		{"orders-1", "orders", "POST", "/v1/locks/" + paymentsLock + "/leases", `{"request_id":"o2","ttl_ms":30000,"wait_ms":30000}`, ""},
		{"orders-1", "orders", "POST", "/v1/locks/payments:customer:shop:alice/leases", `{"request_id":"o3","ttl_ms":30000}`, "payments:customer:shop:alice"},
		{"orders-1", "orders", "POST", leasePath + "/keepalive", "", ""},
		{"orders-1", "orders", "DELETE", leasePath, "", ""},
		{"orders-1", "orders", "POST", coordhttp.KeepAliveBatchPath, batch(paymentsLock), ""},
		{"orders-1", "orders", "GET", "/v1/locks/" + paymentsLock, "", ""},
		// A payments identity outside its own namespace.
		{"payments-2", "sibling", "POST", "/v1/locks/orders:outbox-relay/leases", `{"request_id":"s1","ttl_ms":30000}`, "orders:outbox-relay"},
		{"payments-2", "sibling", "POST", "/v1/locks/customer:shop:alice/leases", `{"request_id":"s2","ttl_ms":30000}`, "customer:shop:alice"},
		{"payments-2", "sibling", "POST", "/v1/locks/payments-v2:x/leases", `{"request_id":"s3","ttl_ms":30000}`, "payments-v2:x"},
		{"payments-2", "sibling", "POST", "/v1/locks/payments-partition-3/leases", `{"request_id":"s4","ttl_ms":30000}`, "payments-partition-3"},
		// A batch with one foreign name among its own is refused whole.
		{"payments-1", "holder", "POST", coordhttp.KeepAliveBatchPath,
			`{"leases":[{"lock":"` + paymentsLock + `","lease_id":"` + l.LeaseID + `"},{"lock":"orders:x","lease_id":"` + l.LeaseID + `"}]}`, ""},
	}
	clients := map[string]*http.Client{"orders": orders, "sibling": sibling, "holder": holder}
	for _, base := range []string{leader, follower} {
		for _, r := range refused {
			got := call(t, clients[r.client], r.method, base+r.path, r.body)
			if got.status != 403 || got.problemType() != "lock-not-in-namespace" {
				t.Errorf("%s: %s %s at %s: %d %s, want 403 lock-not-in-namespace", r.who, r.method, r.path, base, got.status, got.body)
			}
			if r.wantNoCreation != "" {
				if got := call(t, admin, "GET", leader+"/v1/locks/"+r.wantNoCreation, ""); got.status != 404 {
					t.Errorf("%s's refused acquire of %s created it: %d %s", r.who, r.wantNoCreation, got.status, got.body)
				}
			}
		}
	}

	// payments-1 kept its lease through every attempt.
	after := call(t, holder, "GET", leader+"/v1/locks/"+paymentsLock, "")
	if string(withoutRemaining(after.body)) != string(withoutRemaining(before.body)) {
		t.Fatalf("the attempts changed the lock:\n%s\n%s", before.body, after.body)
	}
	if got := call(t, holder, "POST", follower+leasePath+"/keepalive", ""); got.status != 200 {
		t.Fatalf("the holder's keepalive: %d %s", got.status, got.body)
	}
	if got := call(t, holder, "POST", follower+coordhttp.KeepAliveBatchPath, batch(paymentsLock)); got.status != 200 || !strings.Contains(string(got.body), `"lease":{`) {
		t.Fatalf("the holder's batch renewal: %d %s", got.status, got.body)
	}
	// Its sibling shares the namespace: it reads the lock (without the
	// lease id) and may queue for it; it is still not the holder.
	if got := call(t, sibling, "GET", leader+"/v1/locks/"+paymentsLock, ""); got.status != 200 || strings.Contains(string(got.body), l.LeaseID) {
		t.Fatalf("payments-2 reads its service's lock: %d %s", got.status, got.body)
	}
	if got := call(t, sibling, "DELETE", leader+leasePath, ""); got.status != 403 || got.problemType() != "not-holder" {
		t.Fatalf("payments-2 releases payments-1's lease: %d %s, want 403 not-holder", got.status, got.body)
	}
	if got := call(t, holder, "DELETE", follower+leasePath, ""); got.status != 204 {
		t.Fatalf("the holder's release: %d %s", got.status, got.body)
	}

	// Orders has a namespace of its own, and the operator may use any name.
	if got := call(t, orders, "POST", leader+"/v1/locks/orders:outbox-relay/leases", `{"request_id":"o9","ttl_ms":30000}`); got.status != 201 {
		t.Fatalf("orders-1 takes a lock of its namespace: %d %s", got.status, got.body)
	}
	if got := call(t, admin, "POST", leader+"/v1/locks/demo-lock/leases", `{"request_id":"a1","ttl_ms":30000}`); got.status != 201 {
		t.Fatalf("the operator takes a lock with no namespace: %d %s", got.status, got.body)
	}
}

// TestNodeStatusShowsLockDetailsOnlyToThoseWhoMaySeeThem is review F6: a
// node's status lists lock names and holders to the operator, to the
// console, and to a service for its own namespace; everyone else gets the
// number of locks held, not which. Both sides are checked on the leader
// and a follower (each answers from its own replica).
func TestNodeStatusShowsLockDetailsOnlyToThoseWhoMaySeeThem(t *testing.T) {
	c := coordinatortest.StartWith(t, 3, coordinatortest.Options{TLS: true})
	pki := c.PKI()
	leader := c.URL(c.WaitLeader(10 * time.Second))
	follower := c.URL(c.Follower())
	payments, orders := pki.Client(payments1), pki.Client(orders1)
	for _, a := range []struct {
		client *http.Client
		lock   string
	}{{payments, "payments:customer:shop:alice"}, {orders, "orders:outbox-relay"}} {
		if got := call(t, a.client, "POST", leader+"/v1/locks/"+a.lock+"/leases", `{"request_id":"r-`+strings.ReplaceAll(a.lock, ":", "-")+`","ttl_ms":60000}`); got.status != 201 {
			t.Fatalf("acquire %s: %d %s", a.lock, got.status, got.body)
		}
	}
	type status struct {
		LocksHeld int `json:"locks_held"`
		Locks     []struct {
			Name   string `json:"name"`
			Holder *struct {
				Token uint64 `json:"token"`
			} `json:"holder"`
		} `json:"locks"`
	}
	read := func(client *http.Client, base string) (status, string) {
		got := call(t, client, "GET", base+coordhttp.NodeStatusPath, "")
		if got.status != 200 {
			t.Fatalf("node status at %s: %d %s", base, got.status, got.body)
		}
		var st status
		if err := json.Unmarshal(got.body, &st); err != nil {
			t.Fatal(err)
		}
		return st, string(got.body)
	}
	// The follower applies the grants a moment after the leader.
	for _, base := range []string{leader, follower} {
		deadline := time.Now().Add(10 * time.Second)
		for st, _ := read(pki.Client(identity.AdminCLI), base); st.LocksHeld < 2; st, _ = read(pki.Client(identity.AdminCLI), base) {
			if time.Now().After(deadline) {
				t.Fatalf("%s never showed both locks", base)
			}
			<-time.After(20 * time.Millisecond) // poll interval while it replicates
		}
	}
	console := identity.ID{Service: "console", Instance: "console"}
	cases := []struct {
		who    string
		client *http.Client
		see    []string
		hidden []string
	}{
		{"admin", pki.Client(identity.AdminCLI), []string{"payments:customer:shop:alice", "orders:outbox-relay"}, nil},
		{"console", pki.Client(console), []string{"payments:customer:shop:alice", "orders:outbox-relay"}, nil},
		{"payments-2", pki.Client(payments2), []string{"payments:customer:shop:alice"}, []string{"orders:outbox-relay", "orders/orders-1"}},
		{"orders-2", pki.Client(orders2), []string{"orders:outbox-relay"}, []string{"payments:", "alice", "payments/payments-1"}},
		{"bank", pki.Client(identity.ID{Service: identity.Bank, Instance: "bank"}), nil, []string{"payments:", "alice", "orders:", "payments/payments-1", "orders/orders-1"}},
	}
	for _, base := range []string{leader, follower} {
		for _, tc := range cases {
			st, body := read(tc.client, base)
			if st.LocksHeld != 2 {
				t.Errorf("%s at %s: locks_held %d, want 2: %s", tc.who, base, st.LocksHeld, body)
			}
			var names []string
			for _, l := range st.Locks {
				names = append(names, l.Name)
				if l.Holder == nil || l.Holder.Token == 0 {
					t.Errorf("%s at %s: lock %s shown without its holder: %s", tc.who, base, l.Name, body)
				}
			}
			if len(names) != len(tc.see) {
				t.Errorf("%s at %s sees %v, want %v", tc.who, base, names, tc.see)
			}
			for _, n := range tc.see {
				if !strings.Contains(body, `"name":"`+n+`"`) {
					t.Errorf("%s at %s does not see %s: %s", tc.who, base, n, body)
				}
			}
			for _, h := range tc.hidden {
				if strings.Contains(body, h) {
					t.Errorf("%s at %s is shown %q: %s", tc.who, base, h, body)
				}
			}
		}
	}
}
