package http_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

type membersWithRing struct {
	Version uint64 `json:"version"`
	Members []struct {
		Instance string `json:"instance"`
	} `json:"members"`
	Ring            []byte `json:"ring"`
	RingFingerprint string `json:"ring_fingerprint"`
}

func getMembers(t *testing.T, url string) (membersWithRing, *ring.Snapshot) {
	t.Helper()
	st, _, b := do(t, "GET", url, "")
	if st != 200 {
		t.Fatalf("GET %s: %d %s", url, st, b)
	}
	var ms membersWithRing
	if err := json.Unmarshal(b, &ms); err != nil {
		t.Fatalf("members: %v in %s", err, b)
	}
	snap, err := ring.Decode(ms.Ring)
	if err != nil {
		t.Fatalf("the members answer carries no decodable ring: %v in %s", err, b)
	}
	if got := fmt.Sprintf("%016x", snap.Fingerprint()); got != ms.RingFingerprint {
		t.Fatalf("ring fingerprint %s, served %s", got, ms.RingFingerprint)
	}
	return ms, snap
}

// TestMembersCarryTheRing: the members answer carries the coordinator's
// ring, whose owners are those of replaying the same joins and leave with
// ring.Rebalance, and every replica serves the same table.
func TestMembersCarryTheRing(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	base := c.URL(c.WaitLeader(10 * time.Second))
	var model *ring.Snapshot
	var live []ring.Member
	step := func(method, inst string) {
		t.Helper()
		body, want := `{"addr":"127.0.0.1:9000","ttl_ms":60000}`, 200
		if method == "DELETE" {
			body, want = "", 204
		}
		if st, _, b := do(t, method, base+"/v1/services/orders/members/"+inst, body); st != want {
			t.Fatalf("%s %s: %d %s", method, inst, st, b)
		}
		if method == "DELETE" {
			for i, m := range live {
				if m.Name == inst {
					live = append(live[:i:i], live[i+1:]...)
					break
				}
			}
		} else {
			live = append(live, ring.Member{Name: inst})
		}
		var err error
		if model, err = ring.Rebalance(model, live); err != nil {
			t.Fatal(err)
		}
	}
	for _, inst := range []string{"o1", "o2", "o3", "o4"} {
		step("PUT", inst)
	}
	step("DELETE", "o2")

	ms, snap := getMembers(t, base+"/v1/services/orders/members")
	if len(ms.Members) != 3 || snap.Len() != 3 {
		t.Fatalf("%d members, ring of %d; want 3", len(ms.Members), snap.Len())
	}
	for i := range 1000 {
		key := fmt.Sprintf("customer-%d", i)
		got, _ := snap.Owner(key)
		want, _ := model.Owner(key)
		if got != want {
			t.Fatalf("%s: served ring says %s, the replayed history %s", key, got, want)
		}
	}
	// Stale reads come from each replica's own state: once a replica has
	// applied the latest version it must serve the very same table.
	for i := range 3 {
		url := c.URL(i) + "/v1/services/orders/members?stale=true"
		deadline := time.Now().Add(5 * time.Second)
		for {
			got, s := getMembers(t, url)
			if got.Version == ms.Version {
				if s.Fingerprint() != snap.Fingerprint() {
					t.Fatalf("replica %d serves ring %x at version %d, the leader %x", i, s.Fingerprint(), got.Version, snap.Fingerprint())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d stuck at version %d, want %d", i, got.Version, ms.Version)
			}
			// Wait for the replica's next change instead of sleeping.
			getMembers(t, fmt.Sprintf("%s&wait_version=%d&timeout_ms=1000", url, got.Version))
		}
	}
}
