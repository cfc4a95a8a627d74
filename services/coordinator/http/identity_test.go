package http_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
)

var (
	payments1 = identity.ID{Service: identity.Payments, Instance: "payments-1"}
	payments2 = identity.ID{Service: identity.Payments, Instance: "payments-2"}
	orders1   = identity.ID{Service: identity.Orders, Instance: "orders-1"}
	orders2   = identity.ID{Service: identity.Orders, Instance: "orders-2"}
)

type answer struct {
	status int
	header http.Header
	body   []byte
}

// problemType is the last segment of a problem document's type.
func (a answer) problemType() string {
	var p struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil || a.header.Get("Content-Type") != "application/problem+json" {
		return ""
	}
	return p.Type[strings.LastIndex(p.Type, "#")+1:]
}

func call(t *testing.T, client *http.Client, method, url, body string, header ...string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// Like pkg/lock, try again while the cluster elects a leader (a loaded
	// test machine may cause an election mid-test); the body is re-read
	// from the string each time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if body != "" {
			req.Body = io.NopCloser(strings.NewReader(body))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		a := answer{resp.StatusCode, resp.Header, b}
		if a.problemType() != "not-leader" || req.Header.Get(coordhttp.ForwardedHeader) != "" || time.Now().After(deadline) {
			return a
		}
		<-time.After(20 * time.Millisecond) // retry interval while a leader is elected
	}
}

// TestAttacksOnTheCoordinatorAreRefused is issue 11's list, tried against a
// cluster running with mutual TLS: without a client certificate every
// route answers 401, and with another instance's certificate every attack
// answers 403 (or 409 for a live member entry), as problem+json, and
// changes nothing; the rightful holder's calls still work, directly and
// through a follower.
func TestAttacksOnTheCoordinatorAreRefused(t *testing.T) {
	c := coordinatortest.StartWith(t, 3, coordinatortest.Options{TLS: true})
	pki := c.PKI()
	leader := c.URL(c.WaitLeader(10 * time.Second))
	follower := c.URL(c.Follower())
	holder, intruder, admin := pki.Client(payments1), pki.Client(payments2), pki.Client(identity.AdminCLI)

	got := call(t, holder, "POST", follower+"/v1/locks/payments:customer-7/leases", `{"request_id":"r1","ttl_ms":30000}`)
	if got.status != 201 {
		t.Fatalf("the holder's acquire through a follower: %d %s", got.status, got.body)
	}
	var l struct {
		LeaseID string `json:"lease_id"`
		Token   uint64 `json:"token"`
	}
	_ = json.Unmarshal(got.body, &l)
	if got := call(t, pki.Client(orders1), "PUT", leader+"/v1/services/orders/members/orders-1", `{"addr":"10.0.0.1:8080","ttl_ms":30000}`); got.status != 200 {
		t.Fatalf("orders-1 registers itself: %d %s", got.status, got.body)
	}
	lockBefore := call(t, holder, "GET", leader+"/v1/locks/payments:customer-7", "")
	if lockBefore.status != 200 || !strings.Contains(string(lockBefore.body), l.LeaseID) {
		t.Fatalf("the holder reads its own lease id: %d %s", lockBefore.status, lockBefore.body)
	}

	lease := "/v1/locks/payments:customer-7/leases/" + l.LeaseID
	routes := []struct{ name, method, path, body string }{
		{"read the lock", "GET", "/v1/locks/payments:customer-7", ""},
		{"keep alive another's lease", "POST", lease + "/keepalive", ""},
		{"release another's lease", "DELETE", lease, ""},
		{"renew another's lease in a batch", "POST", coordhttp.KeepAliveBatchPath, `{"leases":[{"lock":"payments:customer-7","lease_id":"` + l.LeaseID + `"}]}`},
		{"replay the holder's acquire", "POST", "/v1/locks/payments:customer-7/leases", `{"request_id":"r1","ttl_ms":30000}`},
		{"take a lock for an hour", "POST", "/v1/locks/payments:customer-8/leases", `{"request_id":"r9","ttl_ms":3600000}`},
		{"queue for a lock for five minutes", "POST", "/v1/locks/payments:customer-7/leases", `{"request_id":"r8","ttl_ms":1000,"wait_ms":300000}`},
		{"re-register orders-1 elsewhere", "PUT", "/v1/services/orders/members/orders-1", `{"addr":"6.6.6.6:443","ttl_ms":30000}`},
		{"heartbeat someone else's member", "POST", "/v1/services/orders/members/orders-1/heartbeat", ""},
		{"deregister someone else's member", "DELETE", "/v1/services/orders/members/orders-1", ""},
		{"list members", "GET", "/v1/services/orders/members", ""},
		{"add a voter", "POST", "/v1/cluster/voters", `{"id":"evil","addr":"6.6.6.6:7000"}`},
		{"remove a voter", "DELETE", "/v1/cluster/voters/c2", ""},
		{"read the cluster", "GET", "/v1/cluster", ""},
		{"read a node's incarnation", "GET", coordhttp.SelfPath, ""},
		{"read a node's locks", "GET", coordhttp.NodeStatusPath, ""},
	}
	for _, base := range []string{leader, follower} {
		for _, r := range routes {
			got := call(t, pki.AnonymousClient(), r.method, base+r.path, r.body)
			if got.status != 401 || got.problemType() != "unauthorized" {
				t.Errorf("no certificate, %s at %s: %d %s, want 401 unauthorized", r.name, base, got.status, got.body)
			}
		}
	}

	// With another instance's certificate: what each attack answers.
	want := map[string]struct {
		status int
		typ    string
	}{
		"keep alive another's lease":        {403, "not-holder"},
		"release another's lease":           {403, "not-holder"},
		"replay the holder's acquire":       {403, "not-holder"},
		"take a lock for an hour":           {403, "limit-exceeded"},
		"queue for a lock for five minutes": {403, "limit-exceeded"},
		"re-register orders-1 elsewhere":    {403, "not-holder"},
		"heartbeat someone else's member":   {403, "not-holder"},
		"deregister someone else's member":  {403, "not-holder"},
		"add a voter":                       {403, "forbidden"},
		"remove a voter":                    {403, "forbidden"},
		"read the cluster":                  {403, "forbidden"},
		"read a node's incarnation":         {403, "forbidden"},
	}
	for _, base := range []string{leader, follower} {
		for _, r := range routes {
			w, ok := want[r.name]
			if !ok {
				continue
			}
			got := call(t, intruder, r.method, base+r.path, r.body)
			if got.status != w.status || got.problemType() != w.typ {
				t.Errorf("payments-2, %s at %s: %d %s, want %d %s", r.name, base, got.status, got.body, w.status, w.typ)
			}
		}
		// A batch answers per lease: the other's lease is refused with the
		// problem a single keepalive gets, and is not renewed.
		if got := call(t, intruder, "POST", base+coordhttp.KeepAliveBatchPath, `{"leases":[{"lock":"payments:customer-7","lease_id":"`+l.LeaseID+`"}]}`); got.status != 200 || !strings.Contains(string(got.body), `"type":"not-holder"`) || strings.Contains(string(got.body), `"lease":{`) {
			t.Errorf("payments-2 renews payments-1's lease in a batch at %s: %d %s", base, got.status, got.body)
		}
		// Reads an identity may make show no lease id but the holder's.
		for _, path := range []string{"/v1/locks/payments:customer-7", coordhttp.NodeStatusPath} {
			got := call(t, intruder, "GET", base+path, "")
			if got.status != 200 || strings.Contains(string(got.body), l.LeaseID) {
				t.Errorf("payments-2 reads %s at %s: %d %s: the lease id must not show", path, base, got.status, got.body)
			}
		}
		// A forged caller header changes nothing: the follower replaces
		// it, the leader believes it only from a coordinator node.
		for _, h := range [][]string{{coordhttp.CallerHeader, "payments/payments-1"}, {coordhttp.CallerHeader, "payments/payments-1", coordhttp.ForwardedHeader, "1"}} {
			got := call(t, intruder, "DELETE", base+lease, "", h...)
			// 503 not-leader: a request marked forwarded is never forwarded
			// again, so a node that does not lead (now) refuses it.
			if got.status != 403 && got.problemType() != "not-leader" {
				t.Errorf("payments-2 releases with forged headers %v at %s: %d %s", h, base, got.status, got.body)
			}
		}
	}
	// The operator may not take over a live member either: 409.
	if got := call(t, admin, "PUT", leader+"/v1/services/orders/members/orders-1", `{"addr":"6.6.6.6:443","ttl_ms":30000}`); got.status != 409 || got.problemType() != "member-taken" {
		t.Errorf("admin re-registers live orders-1: %d %s, want 409 member-taken", got.status, got.body)
	}
	// orders-2 may register and heartbeat itself only.
	if got := call(t, pki.Client(orders2), "PUT", leader+"/v1/services/orders/members/orders-2", `{"addr":"10.0.0.2:8080","ttl_ms":30000}`); got.status != 200 {
		t.Errorf("orders-2 registers itself: %d %s", got.status, got.body)
	}

	// Nothing the attacks tried took effect.
	lockAfter := call(t, holder, "GET", leader+"/v1/locks/payments:customer-7", "")
	if string(withoutRemaining(lockAfter.body)) != string(withoutRemaining(lockBefore.body)) {
		t.Fatalf("the attacks changed the lock:\n%s\n%s", lockBefore.body, lockAfter.body)
	}
	members := call(t, holder, "GET", leader+"/v1/services/orders/members", "")
	if !strings.Contains(string(members.body), `"instance":"orders-1","addr":"10.0.0.1:8080"`) || strings.Contains(string(members.body), "6.6.6.6") {
		t.Fatalf("members after the attacks: %s", members.body)
	}
	if got := call(t, admin, "GET", leader+"/v1/locks/payments:customer-8", ""); got.status != 404 {
		t.Fatalf("the hour-long lock exists: %d %s", got.status, got.body)
	}
	cluster := call(t, admin, "GET", leader+"/v1/cluster", "")
	if cluster.status != 200 || strings.Contains(string(cluster.body), "evil") || !strings.Contains(string(cluster.body), `"c2"`) {
		t.Fatalf("cluster after the attacks: %d %s", cluster.status, cluster.body)
	}

	// The rightful holder's flows work, through the follower too.
	if got := call(t, holder, "POST", follower+lease+"/keepalive", ""); got.status != 200 {
		t.Fatalf("holder's keepalive: %d %s", got.status, got.body)
	}
	if got := call(t, holder, "POST", follower+coordhttp.KeepAliveBatchPath, `{"leases":[{"lock":"payments:customer-7","lease_id":"`+l.LeaseID+`"}]}`); got.status != 200 || !strings.Contains(string(got.body), `"lease":{`) {
		t.Fatalf("holder's batch renewal: %d %s", got.status, got.body)
	}
	if got := call(t, pki.Client(orders1), "POST", follower+"/v1/services/orders/members/orders-1/heartbeat", ""); got.status != 204 {
		t.Fatalf("orders-1's heartbeat: %d %s", got.status, got.body)
	}
	if got := call(t, holder, "DELETE", follower+lease, ""); got.status != 204 {
		t.Fatalf("holder's release: %d %s", got.status, got.body)
	}
}

// TestCertificateFromAnotherCAIsRefused: a client whose certificate another
// CA signed (a self-made "payments-1") does not get past the handshake.
func TestCertificateFromAnotherCAIsRefused(t *testing.T) {
	c := coordinatortest.StartWith(t, 1, coordinatortest.Options{TLS: true})
	forged := coordinatortest.NewPKI(t).Files(payments1)
	forged.CA = c.PKI().Files(payments1).CA // trusts the real servers, presents the forged leaf
	client, err := identity.HTTPClient(forged, 5*time.Second, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Post(c.URL(0)+"/v1/locks/x/leases", "application/json", strings.NewReader(`{"request_id":"r","ttl_ms":1000}`))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a certificate from another CA was accepted: %s", resp.Status)
	}
}
