package localnats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/localnats"
)

// TestClusterKeepsEveryAckedMessageThroughANodeLoss: a 3-node cluster
// with payonce's streams (R3, chosen by EnsureStreams because the server
// is clustered) keeps taking publishes while any one node is down, and
// every acknowledged message is there once the node is back, on it too.
func TestClusterKeepsEveryAckedMessageThroughANodeLoss(t *testing.T) {
	for _, mode := range []struct {
		name   string
		binary func(*testing.T) string
	}{
		{"child processes", natsServerBinary},
		{"embedded", func(*testing.T) string { return "" }},
	} {
		t.Run(mode.name, func(t *testing.T) {
			bin := mode.binary(t)
			if bin == "" {
				t.Setenv(localnats.BinaryEnv, "")
			}
			c, err := localnats.StartCluster(localnats.ClusterOptions{Dir: t.TempDir(), Node: localnats.Options{Binary: bin}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Shutdown()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			if err := eventbus.EnsureStreams(ctx, js); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, "ORDERS")
			if err != nil {
				t.Fatal(err)
			}
			if r := st.CachedInfo().Config.Replicas; r != eventbus.ClusterReplicas {
				t.Fatalf("ORDERS has %d replicas on a cluster, want %d", r, eventbus.ClusterReplicas)
			}
			acked := 0
			publish := func(n int) {
				for range n {
					id := fmt.Sprintf("m-%d", acked)
					// A publish that is not acknowledged is retried with the
					// same id, as the outbox relay does: each attempt waits
					// for its ack as long as the relay's does (the client's
					// default API timeout), since an ack lost with a killed
					// stream leader never comes, and a refused attempt is
					// retried after a pause, not in a loop that would starve
					// the embedded servers sharing this process.
					for {
						attempt, cancelAttempt := context.WithTimeout(ctx, 5*time.Second)
						_, err := js.Publish(attempt, "orders.created", []byte(id), jetstream.WithMsgID(id))
						cancelAttempt()
						if err == nil {
							break
						}
						select {
						case <-ctx.Done():
							t.Fatalf("publish %s: %v", id, err)
						case <-time.After(50 * time.Millisecond): // retry pacing, as the relay's poll
						}
					}
					acked++
				}
			}
			publish(50)
			victim := c.Nodes[1]
			victim.Kill()
			publish(50)
			if err := victim.Restart(30 * time.Second); err != nil {
				t.Fatal(err)
			}
			publish(50)
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != uint64(acked) {
				t.Fatalf("%d messages in the stream, want the %d acknowledged", info.State.Msgs, acked)
			}
			// The restarted node catches up: ask it alone.
			one, err := nats.Connect(victim.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer one.Close()
			ojs, _ := jetstream.New(one)
			deadline := time.Now().Add(time.Minute)
			for {
				ost, err := ojs.Stream(ctx, "ORDERS")
				if err == nil {
					if oi, err := ost.Info(ctx); err == nil && oi.State.Msgs == uint64(acked) && oi.Cluster != nil && len(oi.Cluster.Replicas) == 2 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("the restarted node's view of ORDERS never caught up (%v)", err)
				}
				time.Sleep(100 * time.Millisecond) // polling the cluster's state
			}
		})
	}
}
