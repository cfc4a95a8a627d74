package http_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

type lease struct {
	LeaseID string `json:"lease_id"`
	Token   uint64 `json:"token"`
}

func do(t *testing.T, method, url, body string) (int, http.Header, []byte) {
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
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func TestBadInputGetsProblemAndChangesNothing(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	base := c.URL(c.WaitLeader(10 * time.Second))
	st, _, b := do(t, "POST", base+"/v1/locks/orders-1/leases", `{"request_id":"r1","ttl_ms":60000,"owner":"a"}`)
	if st != 201 {
		t.Fatalf("acquire: %d %s", st, b)
	}
	var held lease
	_ = json.Unmarshal(b, &held)
	_, _, before := do(t, "GET", base+"/v1/locks/orders-1", "")

	cases := []struct {
		name, method, path, body string
		status                   int
		problemType              string
	}{
		{"malformed json", "POST", "/v1/locks/orders-1/leases", `{"request_id":`, 400, "malformed-json"},
		{"unknown field", "POST", "/v1/locks/orders-1/leases", `{"request_id":"x","ttl_ms":1000,"bogus":1}`, 400, ""},
		{"zero ttl", "POST", "/v1/locks/orders-2/leases", `{"request_id":"x","ttl_ms":0}`, 400, "invalid"},
		{"negative ttl", "POST", "/v1/locks/orders-2/leases", `{"request_id":"x","ttl_ms":-5}`, 400, "invalid"},
		{"huge ttl", "POST", "/v1/locks/orders-2/leases", `{"request_id":"x","ttl_ms":1000000000000000}`, 400, "invalid"},
		{"negative wait", "POST", "/v1/locks/orders-2/leases", `{"request_id":"x","ttl_ms":1000,"wait_ms":-1}`, 400, "invalid"},
		{"missing request id", "POST", "/v1/locks/orders-2/leases", `{"ttl_ms":1000}`, 400, "invalid"},
		{"bad lock name", "POST", "/v1/locks/a%20b/leases", `{"request_id":"x","ttl_ms":1000}`, 400, "invalid"},
		{"held by another", "POST", "/v1/locks/orders-1/leases", `{"request_id":"r2","ttl_ms":1000}`, 409, "lock-held"},
		{"keepalive wrong lease", "POST", "/v1/locks/orders-1/leases/deadbeef/keepalive", "", 409, "lease-not-held"},
		{"release wrong lease", "DELETE", "/v1/locks/orders-1/leases/deadbeef", "", 409, "lease-not-held"},
		{"release unknown lock", "DELETE", "/v1/locks/nope/leases/" + held.LeaseID, "", 404, "lock-not-found"},
		{"get unknown lock", "GET", "/v1/locks/nope", "", 404, "lock-not-found"},
		{"heartbeat unknown member", "POST", "/v1/services/payments/members/p9/heartbeat", "", 404, "member-not-found"},
		{"register zero ttl", "PUT", "/v1/services/payments/members/p1", `{"addr":"127.0.0.1:1","ttl_ms":0}`, 400, "invalid"},
		{"bad wait_version", "GET", "/v1/services/payments/members?wait_version=x", "", 400, "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, h, b := do(t, tc.method, base+tc.path, tc.body)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, b)
			}
			if ct := h.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q: %s", ct, b)
			}
			var p struct {
				Type   string `json:"type"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(b, &p); err != nil || p.Detail == "" {
				t.Fatalf("not a problem document: %s", b)
			}
			if tc.problemType != "" && !strings.HasSuffix(p.Type, tc.problemType) {
				t.Fatalf("type %q, want ...%s", p.Type, tc.problemType)
			}
		})
	}
	if _, _, after := do(t, "GET", base+"/v1/locks/orders-1", ""); !bytes.Equal(withoutRemaining(before), withoutRemaining(after)) {
		t.Fatalf("bad requests changed the lock:\n%s\n%s", before, after)
	}
	if st, _, b := do(t, "GET", base+"/v1/locks/orders-2", ""); st != 404 {
		t.Fatalf("a refused acquire created lock orders-2: %d %s", st, b)
	}
}

// withoutRemaining drops remaining_ms, which moves with log time.
func withoutRemaining(b []byte) []byte {
	var v map[string]any
	_ = json.Unmarshal(b, &v)
	if h, ok := v["holder"].(map[string]any); ok {
		delete(h, "remaining_ms")
	}
	out, _ := json.Marshal(v)
	return out
}

func TestFollowerForwardsWritesAndServesStaleReads(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	f := c.URL(c.Follower())
	st, _, b := do(t, "POST", f+"/v1/locks/fwd/leases", `{"request_id":"r1","ttl_ms":60000}`)
	if st != 201 {
		t.Fatalf("acquire through a follower: %d %s", st, b)
	}
	var l lease
	_ = json.Unmarshal(b, &l)
	// A retry with the same request id returns the same lease.
	if st, _, b2 := do(t, "POST", f+"/v1/locks/fwd/leases", `{"request_id":"r1","ttl_ms":60000}`); st != 201 || !bytes.Contains(b2, []byte(l.LeaseID)) {
		t.Fatalf("retried acquire: %d %s", st, b2)
	}
	if st, _, b := do(t, "GET", f+"/v1/locks/fwd", ""); st != 200 || !bytes.Contains(b, []byte(l.LeaseID)) {
		t.Fatalf("linearizable read through a follower: %d %s", st, b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, b := do(t, "GET", f+"/v1/locks/fwd?stale=true", "")
		if st == 200 && bytes.Contains(b, []byte(l.LeaseID)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale read on the follower never caught up: %d %s", st, b)
		}
		<-time.After(10 * time.Millisecond) // polling interval
	}
	if st, _, b := do(t, "DELETE", f+"/v1/locks/fwd/leases/"+l.LeaseID, ""); st != 204 {
		t.Fatalf("release through a follower: %d %s", st, b)
	}
}

func TestMembersLongPoll(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	base := c.URL(c.WaitLeader(10 * time.Second))
	st, _, b := do(t, "PUT", base+"/v1/services/payments/members/p1", `{"addr":"127.0.0.1:9001","ttl_ms":60000}`)
	if st != 200 {
		t.Fatalf("register: %d %s", st, b)
	}
	_, _, b = do(t, "GET", base+"/v1/services/payments/members", "")
	var ms struct {
		Version uint64 `json:"version"`
		Members []struct {
			Instance string `json:"instance"`
		} `json:"members"`
	}
	_ = json.Unmarshal(b, &ms)
	if len(ms.Members) != 1 || ms.Version == 0 {
		t.Fatalf("members: %s", b)
	}
	type result struct {
		body []byte
		at   time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, _, b := do(t, "GET", base+"/v1/services/payments/members?timeout_ms=10000&wait_version="+itoa(ms.Version), "")
		done <- result{b, time.Now()}
	}()
	select {
	case r := <-done:
		t.Fatalf("long poll returned before any change: %s", r.body)
	case <-time.After(300 * time.Millisecond): // the poll must still be blocked
	}
	registeredAt := time.Now()
	if st, _, b := do(t, "PUT", base+"/v1/services/payments/members/p2", `{"addr":"127.0.0.1:9002","ttl_ms":60000}`); st != 200 {
		t.Fatalf("register p2: %d %s", st, b)
	}
	select {
	case r := <-done:
		if !bytes.Contains(r.body, []byte(`"p2"`)) {
			t.Fatalf("long poll answer lacks p2: %s", r.body)
		}
		t.Logf("long poll woke %v after the change", r.at.Sub(registeredAt))
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not return after the change")
	}
}

func itoa(v uint64) string { b, _ := json.Marshal(v); return string(b) }
