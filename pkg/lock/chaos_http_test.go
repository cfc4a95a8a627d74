package lock_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// TestLinearizableThroughTheClientUnderChaos records what users of pkg/lock
// see, over HTTP against all three nodes (each client starts at a different
// node, so followers forward), while the leader is killed twice and a
// follower is brought back from a snapshot install: acquires with and
// without waits (some abandoned by their callers, which makes the
// coordinator cancel the wait), holds long enough for keepalives,
// linearizable reads of the lock from random nodes, releases, and holders
// that stop keeping their lease alive so it expires by its TTL. Then the
// network between the nodes fails while the clients go on: the leader is
// cut off from both followers (it is still reachable by clients, and still
// believes it leads for a moment), one link between the leader and a
// follower is cut, and a follower is cut off. The history must be
// linearizable under leaseModel; TestLeaseModelRejectsBadHistories shows
// the model catches each failure of issue 13 first, and a stale read from a
// cut-off leader.
func TestLinearizableThroughTheClientUnderChaos(t *testing.T) {
	network := coordinatortest.NewNetwork()
	c := coordinatortest.StartWith(t, 3, coordinatortest.Options{Tune: func(cfg *raftnode.Config) {
		// Short enough that a follower down for a few seconds comes back
		// through a snapshot install rather than the log.
		cfg.TrailingLogs = 16
		cfg.SnapshotThreshold = 32
		cfg.SnapshotInterval = 200 * time.Millisecond
		network.Tune(cfg)
	}})
	raftAddrs := []string{c.RaftAddr(0), c.RaftAddr(1), c.RaftAddr(2)}
	const ttl = time.Second
	h := &linHistory{start: time.Now()}
	urls := c.URLs()
	keys := []string{"customer-1", "customer-2"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(client), 13))
			order := append(append([]string(nil), urls[client%3:]...), urls[:client%3]...)
			cl := lock.NewClient(order, lock.WithOwner(fmt.Sprintf("client-%d", client)))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[rng.IntN(len(keys))]
				switch r := rng.IntN(10); {
				case r < 2:
					linRead(h, client, urls[rng.IntN(3)], key)
				case r < 3:
					linCrashedHolder(h, client, urls[rng.IntN(3)], key, ttl)
				default:
					linAcquireHoldRelease(h, client, rng, cl, urls, key, ttl)
				}
			}
		}()
	}

	pace := func(d time.Duration) { <-time.After(d) } // the chaos schedule's pacing, not a wait for a condition
	for round := range 2 {
		pace(1500 * time.Millisecond)
		l := c.WaitLeader(10 * time.Second)
		c.Kill(l)
		t.Logf("round %d: killed leader c%d", round, l+1)
		pace(1 * time.Second)
		c.Restart(l)
	}
	f := c.Follower()
	c.Kill(f)
	pace(1500 * time.Millisecond) // ticks and operations move the log past the follower
	l := c.WaitLeader(10 * time.Second)
	if err := c.Node(l).Snapshot(); err != nil {
		t.Logf("snapshot on the leader: %v", err)
	}
	c.Restart(f)
	t.Logf("follower c%d restarted behind a snapshot", f+1)
	pace(1500 * time.Millisecond)

	// The leader cut off from both followers: the majority elects another
	// leader, while clients still reach the old one over HTTP.
	l = c.WaitLeader(10 * time.Second)
	network.Isolate(raftAddrs[l], raftAddrs...)
	nl := c.WaitLeaderOtherThan(l, 10*time.Second) // fails the test if the majority elects nobody
	t.Logf("partition: leader c%d cut off; c%d leads the majority", l+1, nl+1)
	pace(1500 * time.Millisecond)
	network.Heal()
	// One link down between the leader and a follower: the follower still
	// hears the third node, which may campaign with it.
	l = c.WaitLeader(10 * time.Second)
	f = (l + 1) % 3
	network.Cut(raftAddrs[l], raftAddrs[f])
	t.Logf("partition: link c%d-c%d cut", l+1, f+1)
	pace(1500 * time.Millisecond)
	network.Heal()
	// A follower cut off: it keeps answering its clients' forwarded calls
	// with errors, and campaigns alone; when the network heals it rejoins.
	f = c.Follower()
	network.Isolate(raftAddrs[f], raftAddrs...)
	t.Logf("partition: follower c%d cut off", f+1)
	pace(1500 * time.Millisecond)
	network.Heal()
	c.WaitLeader(10 * time.Second)
	pace(1000 * time.Millisecond)
	close(stop)
	wg.Wait()

	count := map[string]int{}
	for _, op := range h.ops {
		in, out := op.Input.(linIn), op.Output.(linOut)
		if out.OK || (in.Op == "read" && !out.Unknown) || in.Op == "lost" {
			count[in.Op]++
		}
	}
	t.Logf("history: %d operations: %v", len(h.ops), count)
	if count["acquire"] < 10 || count["read"] < 10 || count["lost"] < 1 {
		t.Fatalf("too little happened for the check to mean much: %v", count)
	}
	res, info := porcupine.CheckOperationsVerbose(leaseModel.ToModel(), h.ops, 20*time.Second)
	if res != porcupine.Ok {
		if dir := os.Getenv("PAYONCE_PORCUPINE_HTML"); dir != "" {
			_ = porcupine.VisualizePath(leaseModel.ToModel(), info, dir)
		}
		sort.Slice(h.ops, func(i, j int) bool { return h.ops[i].Call < h.ops[j].Call })
		for _, op := range h.ops {
			t.Logf("%d..%d c%d %s", op.Call/1e6, op.Return/1e6, op.ClientId, leaseModel.DescribeOperation(op.Input, op.Output))
		}
		t.Fatalf("the history seen through pkg/lock is %s", res)
	}
}
