package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/payonce/payonce/services/coordinator/fsm"
)

// TestMetricsNameTheLeaderAndCountGrants: exactly one node's
// coordinator_raft_leader is 1, and after the leader is killed the new
// leader's is (the "no leader" alert sums this gauge); the leader counts
// an acquire granted at once, one queued behind the holder and one
// refused.
func TestMetricsNameTheLeaderAndCountGrants(t *testing.T) {
	metrics := map[string]*Metrics{}
	c := newCluster(t, 3, func(cfg *Config) {
		if metrics[cfg.ID] == nil {
			metrics[cfg.ID] = NewMetrics(prometheus.NewRegistry())
		}
		cfg.Metrics = metrics[cfg.ID]
	})
	leaders := func(excluded ...int) (count int, who int) {
		who = -1
		for i, p := range c.peers {
			if contains(excluded, i) {
				continue
			}
			if testutil.ToFloat64(metrics[p.ID].IsLeader) == 1 {
				count, who = count+1, i
			}
		}
		return count, who
	}
	leader := c.waitLeader(10 * time.Second)
	if !poll(5*time.Second, func() bool { n, who := leaders(); return n == 1 && who == leader }) {
		n, who := leaders()
		t.Fatalf("%d nodes say they lead (last %d), want only node %d", n, who, leader)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: "customer-1", Owner: "a", RequestID: "a-1", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: "customer-1", Owner: "b", RequestID: "b-1", TTL: time.Minute, Wait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: "customer-1", Owner: "c", RequestID: "c-1", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	m := metrics[c.peers[leader].ID]
	for outcome, want := range map[string]float64{AcquireGranted: 1, AcquireQueued: 1, AcquireRefused: 1} {
		if got := testutil.ToFloat64(m.Acquires.WithLabelValues(outcome)); got != want {
			t.Errorf("leader counted %v acquires %s, want %v", got, outcome, want)
		}
	}
	if testutil.CollectAndCount(m.FSMApplyLatency) != 1 || testutil.CollectAndCount(m.ApplyLatency) != 1 {
		t.Error("the apply latencies are not exported")
	}

	c.kill(leader)
	next := c.waitLeader(10*time.Second, leader)
	if !poll(5*time.Second, func() bool { n, who := leaders(leader); return n == 1 && who == next }) {
		n, who := leaders(leader)
		t.Fatalf("after the leader's death %d live nodes say they lead (last %d), want only node %d", n, who, next)
	}
}
