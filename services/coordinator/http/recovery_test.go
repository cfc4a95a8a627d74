package http_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
)

// TestLostDiskRecoveryThroughTheAdminAPI follows docs/raft.md's recovery
// from a lost disk with the HTTP routes an operator uses: the wiped node
// comes back joining (GET /v1/cluster/self says so, /readyz is 503 naming
// the reason), the operator removes it and adds it back on any node (the
// call is forwarded to the leader, which admits the node's incarnation),
// and the node is a ready voter again; the lock it held before still holds
// and the next token is higher.
func TestLostDiskRecoveryThroughTheAdminAPI(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	lostDiskRecovery(t, c, 600000, func(method, url, body string) (int, []byte) {
		code, _, b := do(t, method, url, body)
		return code, b
	})
}

// TestLostDiskRecoveryThroughTheAdminAPIWithTLS is the same recovery on a
// cluster with mutual TLS, by the operator's certificate. The admit step
// of POST /v1/cluster/voters asks the re-added node about itself: it must
// do so with the node's own certificate (a plain client failed the
// handshake, and the operator got 503 "admitting it failed" every time).
// The test cluster runs no background admitter, so only that step can
// admit the node here.
func TestLostDiskRecoveryThroughTheAdminAPIWithTLS(t *testing.T) {
	c := coordinatortest.StartWith(t, 3, coordinatortest.Options{TLS: true})
	admin := c.PKI().Client(identity.AdminCLI)
	// An identity, the operator too, may ask for a lease of at most
	// COORDINATOR_MAX_LEASE_TTL (1 min by default).
	lostDiskRecovery(t, c, 60000, func(method, url, body string) (int, []byte) {
		a := call(t, admin, method, url, body)
		return a.status, a.body
	})
}

func lostDiskRecovery(t *testing.T, c *coordinatortest.Cluster, ttlMS int, do func(method, url, body string) (int, []byte)) {
	t.Helper()
	leader := c.WaitLeader(10 * time.Second)
	if code, b := do(http.MethodPost, c.URL(leader)+"/v1/locks/customer-5/leases", `{"request_id":"before","ttl_ms":`+strconv.Itoa(ttlMS)+`}`); code != http.StatusCreated {
		t.Fatalf("acquire: %d %s", code, b)
	}
	wiped := c.Follower()
	c.Wipe(wiped)
	c.Restart(wiped)

	self := func() coordhttp.Self {
		t.Helper()
		code, b := do(http.MethodGet, c.URL(wiped)+coordhttp.SelfPath, "")
		var s coordhttp.Self
		if code != http.StatusOK || json.Unmarshal(b, &s) != nil {
			t.Fatalf("self: %d %s", code, b)
		}
		return s
	}
	if s := self(); !s.Joining || s.Incarnation == "" {
		t.Fatalf("the wiped node does not say it is joining: %+v", s)
	}
	if code, b := do(http.MethodGet, c.URL(wiped)+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("a joining node is ready: %d %s", code, b)
	}

	id, addr := self().ID, c.RaftAddr(wiped)
	other := (wiped + 1) % 3
	if code, b := do(http.MethodDelete, c.URL(other)+"/v1/cluster/voters/"+id, ""); code != http.StatusNoContent {
		t.Fatalf("remove voter: %d %s", code, b)
	}
	if code, b := do(http.MethodPost, c.URL(other)+"/v1/cluster/voters", `{"id":"`+id+`","addr":"`+addr+`"}`); code != http.StatusNoContent {
		t.Fatalf("add voter back: %d %s", code, b)
	}
	for deadline := time.Now().Add(30 * time.Second); self().Joining; {
		if time.Now().After(deadline) {
			t.Fatal("the re-added node was never admitted")
		}
		<-time.After(10 * time.Millisecond) // polling interval of a bounded wait
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if code, _ := do(http.MethodGet, c.URL(wiped)+"/readyz", ""); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admitted node never became ready")
		}
		<-time.After(10 * time.Millisecond) // polling interval of a bounded wait
	}
	code, b := do(http.MethodGet, c.URL(wiped)+"/v1/locks/customer-5", "")
	var st struct {
		Holder *lease `json:"holder"`
	}
	if code != http.StatusOK || json.Unmarshal(b, &st) != nil || st.Holder == nil {
		t.Fatalf("the grant made before the lost disk is gone: %d %s", code, b)
	}
	if code, b := do(http.MethodPost, c.URL(wiped)+"/v1/locks/customer-6/leases", `{"request_id":"after","ttl_ms":1000}`); code != http.StatusCreated {
		t.Fatalf("acquire after recovery: %d %s", code, b)
	} else {
		var l lease
		if json.Unmarshal(b, &l) != nil || l.Token <= st.Holder.Token {
			t.Fatalf("token after recovery %s not above %d", b, st.Holder.Token)
		}
	}
}
