package http_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	coordhttp "github.com/payonce/payonce/services/coordinator/http"

	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

// TestNodeStatusIsEachNodesOwnView asks every node of a 3-node cluster for
// its status: the route is answered by the node asked (a follower says
// Follower, it is not forwarded to the leader), all agree on the leader and
// the voters, and a held lock shows with its holder and fencing token.
func TestNodeStatusIsEachNodesOwnView(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	leader := c.WaitLeader(10 * time.Second)
	st, _, b := do(t, "POST", c.URL(leader)+"/v1/locks/customer:alice/leases", `{"request_id":"r1","ttl_ms":60000,"owner":"payments-1"}`)
	if st != 201 {
		t.Fatalf("acquire: %d %s", st, b)
	}
	var held lease
	if err := json.Unmarshal(b, &held); err != nil {
		t.Fatal(err)
	}

	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	leaders := 0
	for i := range 3 {
		// A follower's replica applies the grant a moment after the leader.
		deadline := time.Now().Add(10 * time.Second)
		for {
			st, _, b := do(t, "GET", c.URL(i)+coordhttp.NodeStatusPath, "")
			if st != 200 {
				t.Fatalf("node %d: %d %s", i, st, b)
			}
			var ns struct {
				coordinator.NodeStatus
				Locks []struct {
					Name   string `json:"name"`
					Holder *struct {
						Owner       string `json:"owner"`
						Token       uint64 `json:"token"`
						RemainingMS int64  `json:"remaining_ms"`
					} `json:"holder"`
				} `json:"locks"`
			}
			if err := json.Unmarshal(b, &ns); err != nil {
				t.Fatalf("node %d: %v in %s", i, err, b)
			}
			if ns.State != "Leader" && ns.State != "Follower" {
				t.Fatalf("node %d is %q", i, ns.State)
			}
			if len(ns.Voters) != 3 || !slices.Contains(ns.Voters, ns.ID) || ns.LeaderID == "" || ns.Term == 0 {
				t.Fatalf("node %d status %+v", i, ns)
			}
			if ns.AppliedIndex > ns.CommitIndex || ns.CommitIndex > ns.LastLogIndex {
				t.Fatalf("node %d indexes out of order: %+v", i, ns)
			}
			if len(ns.Locks) == 1 {
				l := ns.Locks[0]
				if l.Name != "customer:alice" || l.Holder == nil || uint64(l.Holder.Token) != held.Token || l.Holder.Owner != "payments-1" ||
					l.Holder.RemainingMS <= 0 || l.Holder.RemainingMS > 60000 {
					t.Fatalf("node %d lock %+v", i, l)
				}
				if ns.State == "Leader" {
					leaders++
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d never showed the held lock: %s", i, b)
			}
			<-poll.C
		}
	}
	if leaders != 1 {
		t.Fatalf("%d nodes said Leader, want 1", leaders)
	}
}
