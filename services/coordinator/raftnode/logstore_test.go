package raftnode

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator/fsm"
)

// TestEachLogStoreKeepsStateAndRefusesTheOther runs a one-node cluster on
// each store, restarts it on the same store and then with the store unnamed
// (tokens keep rising, so the log survived), and checks that the other
// store is refused on that data dir: it would start without the node's term
// and vote.
func TestEachLogStoreKeepsStateAndRefusesTheOther(t *testing.T) {
	for _, tc := range []struct{ store, other string }{
		{LogStoreBolt, LogStoreWAL},
		{LogStoreWAL, LogStoreBolt},
	} {
		t.Run(tc.store, func(t *testing.T) {
			addr := freeAddr(t)
			cfg := Config{
				ID: "n1", Bind: addr, DataDir: t.TempDir(), LogStore: tc.store, Peers: []Peer{{ID: "n1", Addr: addr}}, Bootstrap: true,
				HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
				LeaderLeaseTimeout: 150 * time.Millisecond, TickInterval: 25 * time.Millisecond, LogOutput: io.Discard,
			}
			grants := 0
			token := func() uint64 {
				t.Helper()
				var n *Node
				var err error
				// A restarted node rebinds the port it just released.
				poll(2*time.Second, func() bool { n, err = Open(cfg); return err == nil })
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				defer n.Close()
				if !poll(10*time.Second, n.IsLeader) {
					t.Fatal("single node did not become leader")
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				grants++
				name := fmt.Sprintf("lock-%d", grants)
				res, err := n.Apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: name, RequestID: name, TTL: time.Minute})
				if err != nil || res.Lease == nil {
					t.Fatalf("acquire: %v %+v", err, res)
				}
				return uint64(res.Lease.Token)
			}
			first := token()
			second := token()
			if second <= first {
				t.Fatalf("token after restart %d, want above %d", second, first)
			}
			// An empty LogStore adopts the store the data dir holds: how a
			// node created before the default changed keeps its log.
			cfg.LogStore = ""
			if third := token(); third <= second {
				t.Fatalf("token after restart with the store unnamed %d, want above %d", third, second)
			}

			other := cfg
			other.LogStore = tc.other
			if n, err := Open(other); err == nil {
				n.Close()
				t.Fatalf("store %q opened a data dir that holds a %q store", tc.other, tc.store)
			}
		})
	}

	if _, err := Open(Config{ID: "n1", Bind: "127.0.0.1:0", DataDir: t.TempDir(), LogStore: "sqlite"}); err == nil {
		t.Fatal("unknown log store accepted")
	}
}
