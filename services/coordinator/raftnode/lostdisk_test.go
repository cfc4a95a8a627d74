package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator/fsm"
)

// TestLostDiskNodeDoesNotVoteUntilReadmitted is the failure of issue 13: a
// grant is committed by the leader and one follower while the third node
// lags; then the leader crashes and the follower that acknowledged the
// grant loses its disk. Had the wiped node bootstrapped again or voted with
// its empty log, the lagging node (which never saw the grant) would have
// won an election with its vote, the grant would be gone and its token
// could be issued again. The wiped node must refuse to vote until the
// leader admits it; once the old leader is back, the grant is still there;
// the documented recovery (remove the voter, add it back, which admits it)
// makes it a voter again; tokens never repeat.
func TestLostDiskNodeDoesNotVoteUntilReadmitted(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := c.waitLeader(10 * time.Second)
	var followers []int
	for i := range c.peers {
		if i != leader {
			followers = append(followers, i)
		}
	}
	lagging, witness := followers[0], followers[1]

	c.net.Isolate(c.peers[lagging].Addr, c.addrs()...)
	g, err := c.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: "customer-1", RequestID: "g", TTL: time.Hour})
	if err != nil || g.Lease == nil {
		t.Fatalf("grant: %v %+v", err, g)
	}
	tokens := []uint64{uint64(g.Lease.Token)}

	// The leader crashes and the witness, which acknowledged the grant,
	// comes back with an empty data directory.
	c.kill(leader)
	c.wipe(witness)
	c.net.Heal()
	c.start(witness)
	w := c.node(witness)
	if joining, _ := w.Joining(); !joining {
		t.Fatal("a node restarted with an empty data directory is not joining")
	}
	if !poll(30*time.Second, func() bool { return w.RefusedVotes() >= 2 }) {
		t.Fatalf("the lagging node never asked the wiped node for its vote (refused %d)", w.RefusedVotes())
	}
	if o := c.node(lagging).Machine().Outcome("g"); o.Lease != nil {
		t.Fatal("the lagging node has the grant: the scenario did not happen")
	}
	for _, i := range []int{lagging, witness} {
		if c.node(i).IsLeader() {
			t.Fatalf("%s leads with the wiped node's vote: the grant is lost", c.peers[i].ID)
		}
	}

	// The old leader returns: it has the grant, and only it can win.
	c.start(leader)
	l := c.waitLeader(30 * time.Second)
	if o := c.node(l).Machine().Outcome("g"); o.Lease == nil || uint64(o.Lease.Token) != tokens[0] {
		t.Fatalf("the committed grant is lost: %+v (leader %s)", o, c.peers[l].ID)
	}

	// Recovery: remove the wiped voter and add it back; the leader admits
	// its incarnation.
	ln := c.node(l)
	if err := ln.RemoveServer(c.peers[witness].ID); err != nil {
		t.Fatalf("remove %s: %v", c.peers[witness].ID, err)
	}
	if err := ln.AddVoter(c.peers[witness].ID, c.peers[witness].Addr); err != nil {
		t.Fatalf("add %s back: %v", c.peers[witness].ID, err)
	}
	_, inc := w.Joining()
	if err := ln.Admit(ctx, c.peers[witness].ID, inc); err != nil {
		t.Fatalf("admit: %v", err)
	}
	if !poll(30*time.Second, func() bool { joining, _ := w.Joining(); return !joining }) {
		t.Fatal("the wiped node was not admitted")
	}

	// It votes again: with the old leader gone, it and the lagging node
	// elect a leader that has the grant.
	if _, err := c.apply(ctx, fsm.Command{Op: fsm.OpRelease, Lock: "customer-1", LeaseID: g.Lease.ID}); err != nil {
		t.Fatalf("release: %v", err)
	}
	tokens = append(tokens, uint64(c.grant(ctx, "customer-1", "after-recovery")))
	c.waitConverged(30 * time.Second)
	c.kill(c.waitLeader(10 * time.Second))
	c.waitLeader(30 * time.Second)
	tokens = append(tokens, uint64(c.grant(ctx, "customer-1", "after-second-failover")))

	seen := map[uint64]bool{}
	for i, tok := range tokens {
		if seen[tok] || (i > 0 && tok <= tokens[i-1]) {
			t.Fatalf("(customer-1, %d) repeated or out of order: %v", tok, tokens)
		}
		seen[tok] = true
	}
	if _, hashes := c.waitConverged(30 * time.Second); !allSame(hashes) {
		t.Fatalf("replicas differ: %v", hashes)
	}
	t.Logf("tokens %v; the wiped node refused %d vote requests while joining", tokens, w.RefusedVotes())
}
