package http_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/proc"
	"github.com/payonce/payonce/services/coordinator/fsm"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/internal/linkcut"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// TestJoinerCannotStallTheLeader: a cluster grows as make dev, compose and
// Kubernetes start it, one node bootstrapping and the others joining with
// empty data directories (they refuse their vote until admitted). Here the
// joiner is cut off from the leader's Raft traffic while the leader's
// admitter finds it. Added straight as a voter, the unreachable joiner
// counted towards every commit: the leader could commit nothing, stepped
// down after one lease timeout, and could never be elected again (the
// joiner's vote was needed, and the admit entry that would release it
// needed a leader); make dev's start-up hung that way at load 20. The
// admitter now adds a joiner as a nonvoter, admits it, and promotes it once
// it reports itself admitted: while the joiner is cut off the leader goes
// on committing, and once the link is back the joiner becomes a voter.
func TestJoinerCannotStallTheLeader(t *testing.T) {
	network := linkcut.NewNetwork()
	open := func(id string, bootstrap bool) (*raftnode.Node, string) {
		port, err := proc.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		n, err := raftnode.Open(raftnode.Config{
			ID: id, Bind: addr, DataDir: filepath.Join(t.TempDir(), id), Peers: []raftnode.Peer{{ID: id, Addr: addr}},
			Bootstrap: bootstrap, LogOutput: io.Discard, WrapTransport: network.Wrap,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			TickInterval: 25 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n, addr
	}
	leader, leaderAddr := open("c1", true)
	joiner, joinerAddr := open("c2", false)
	srv := httptest.NewServer(coordhttp.NewAPI(coordhttp.APIConfig{Service: raftnode.NewService(joiner), Cluster: joiner}))
	defer srv.Close()
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30s for %s", what)
			}
			<-time.After(20 * time.Millisecond) // polling interval of a bounded wait
		}
	}
	wait("c1 to lead its one-node cluster", leader.IsLeader)
	if joining, _ := joiner.Joining(); !joining {
		t.Fatal("a node started with no state and no bootstrap is not joining")
	}

	network.Cut(leaderAddr, joinerAddr)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&coordhttp.Admitter{Cluster: leader, Peers: map[string]string{"c2": srv.URL}, Interval: 50 * time.Millisecond}).Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	wait("the admitter to add c2", func() bool { member, _, _ := leader.Suffrage("c2"); return member })

	// Cut off, the joiner must not count: the leader commits alone.
	for i := range 3 {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		res, err := leader.Apply(actx, fsm.Command{Op: fsm.OpAcquire, Lock: fmt.Sprintf("while-cut-%d", i), RequestID: fmt.Sprintf("r-%d", i), TTL: time.Minute})
		acancel()
		if err != nil || res.Lease == nil {
			t.Fatalf("with the joiner cut off, the leader could not commit: %v %+v", err, res)
		}
		if _, voter, _ := leader.Suffrage("c2"); voter {
			t.Fatal("c2 is a voter before it was admitted")
		}
	}
	if !leader.IsLeader() {
		t.Fatal("c1 stepped down while the joiner was cut off")
	}

	network.Heal()
	wait("c2 to be admitted and promoted to voter", func() bool {
		_, voter, _ := leader.Suffrage("c2")
		joining, _ := joiner.Joining()
		return voter && !joining
	})
	actx, acancel := context.WithTimeout(ctx, 10*time.Second)
	defer acancel()
	if res, err := leader.Apply(actx, fsm.Command{Op: fsm.OpAcquire, Lock: "after", RequestID: "after", TTL: time.Minute}); err != nil || res.Lease == nil {
		t.Fatalf("the two-voter cluster could not commit: %v %+v", err, res)
	}
}
