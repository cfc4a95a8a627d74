package membership_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/membership"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
)

type instance struct {
	m    *membership.Membership
	stop context.CancelFunc
	done chan struct{}
}

func start(t *testing.T, client *membership.Client, name string) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{
		m:    membership.New(client, "orders", membership.Member{Instance: name, Addr: "http://" + name}, 5*time.Second, nil),
		stop: cancel, done: make(chan struct{}),
	}
	go func() { defer close(in.done); _ = in.m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-in.done })
	select {
	case <-in.m.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never saw itself on the ring", name)
	}
	return in
}

// waitSame waits until every instance has installed a ring of n members at
// the same membership version.
func waitSame(t *testing.T, n int, ins ...*instance) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, in := range ins {
			ok = ok && len(in.m.Members()) == n && in.m.Version() == ins[0].m.Version()
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			for _, in := range ins {
				t.Logf("%s: version %d, members %v", in.m.Self().Instance, in.m.Version(), in.m.Members())
			}
			t.Fatalf("instances did not converge on %d members", n)
		}
		<-time.After(5 * time.Millisecond) // polling interval of a bounded wait
	}
}

// owners returns the owner of each of 1000 customer keys, requiring every
// instance to name the same one.
func owners(t *testing.T, ins ...*instance) []string {
	t.Helper()
	out := make([]string, 1000)
	for i := range out {
		key := fmt.Sprintf("customer-%d", i)
		for j, in := range ins {
			o, ok := in.m.Owner(key)
			if !ok {
				t.Fatalf("%s: %s has an empty ring", key, in.m.Self().Instance)
			}
			if j == 0 {
				out[i] = o.Instance
			} else if o.Instance != out[i] {
				t.Fatalf("%s: %s says %s owns it, %s says %s", key, ins[0].m.Self().Instance, out[i], in.m.Self().Instance, o.Instance)
			}
		}
	}
	return out
}

// TestInstancesAgreeAndALeaveMovesOnlyTheLeaversKeys runs three instances
// against a real 3-node coordinator. After the joins every instance names
// the same owner for every key; after one leaves, the two left agree again
// and only the leaver's keys have a new owner (a ring built from the member
// set alone would move almost all of them); a watcher of Changed is woken.
func TestInstancesAgreeAndALeaveMovesOnlyTheLeaversKeys(t *testing.T) {
	c := coordinatortest.Start(t, 3)
	client := membership.NewClient(c.URLs(), nil)
	a := start(t, client, "orders-a")
	b := start(t, client, "orders-b")
	leaver := start(t, client, "orders-c")
	waitSame(t, 3, a, b, leaver)
	if a.m.Fingerprint() != b.m.Fingerprint() || b.m.Fingerprint() != leaver.m.Fingerprint() {
		t.Fatalf("fingerprints differ: %x %x %x", a.m.Fingerprint(), b.m.Fingerprint(), leaver.m.Fingerprint())
	}
	before := owners(t, a, b, leaver)
	count := map[string]int{}
	for _, o := range before {
		count[o]++
	}
	if len(count) != 3 {
		t.Fatalf("owners %v: keys not spread over all three", count)
	}

	versionBefore := a.m.Version()
	changed := a.m.Changed()
	leaver.stop() // Run deregisters on the way out
	<-leaver.done
	waitSame(t, 2, a, b)
	if a.m.Version() == versionBefore {
		t.Fatal("the leave did not change the version")
	}
	select {
	case <-changed: // a worker waiting on Changed woke for the new ring
	default:
		t.Fatal("a new ring was installed but Changed was not closed")
	}
	after := owners(t, a, b)
	moved := 0
	for i := range after {
		switch {
		case before[i] == "orders-c":
			moved++
			if after[i] == "orders-c" {
				t.Fatalf("customer-%d still owned by the leaver", i)
			}
		case after[i] != before[i]:
			t.Fatalf("customer-%d moved %s -> %s although neither left", i, before[i], after[i])
		}
	}
	t.Logf("owners before the leave %v; %d of 1000 keys moved, all of them the leaver's", count, moved)
}
