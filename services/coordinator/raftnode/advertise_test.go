package raftnode

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/fsm"
)

// TestNodesAdvertiseTheirAddressAsConfigured: a node advertises its Raft
// address as written ("coordinator-2:7000"), never one resolution of it, so
// the cluster's configuration holds the name and every dial resolves it
// again. Compose and Kubernetes may restart a node on another IP; a
// configuration holding the old IP left the compose e2e's restarted
// coordinator-2 unreachable by the leader for good. Here the nodes bind
// 127.0.0.1 and advertise "localhost:<port>": each must report the name,
// the leader must record the name when it adds the other as a voter, and a
// grant must commit, which needs the leader to have dialled the name. Over
// TLS and over plain TCP (dev mode), which go through the same stream layer.
func TestNodesAdvertiseTheirAddressAsConfigured(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		name := "plain"
		if overTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			var pki func(instance string) *TLS
			if overTLS {
				pki = testPeerTLS(t)
			}
			open := func(id string, bootstrap bool) *Node {
				bind := freeAddr(t)
				_, port, _ := net.SplitHostPort(bind)
				cfg := Config{
					ID: id, Bind: bind, Advertise: net.JoinHostPort("localhost", port), DataDir: t.TempDir(),
					LogStore: testLogStore, Bootstrap: bootstrap,
					// Generous: n2 is not admitted (it refuses its vote), so
					// n1 must keep its leadership while n2 catches up over
					// TLS handshakes under the race detector.
					HeartbeatTimeout: time.Second, ElectionTimeout: time.Second,
					LeaderLeaseTimeout: time.Second, CommitTimeout: 5 * time.Millisecond,
					TickInterval: 25 * time.Millisecond,
				}
				cfg.Peers = []Peer{{ID: id, Addr: cfg.Advertise}}
				if pki != nil {
					cfg.TLS = pki(id)
				}
				n, err := Open(cfg)
				if err != nil {
					t.Fatalf("open %s: %v", id, err)
				}
				t.Cleanup(func() { n.Close() })
				if got := n.RaftAddr(); got != cfg.Advertise {
					t.Fatalf("%s advertises %q, configured %q", id, got, cfg.Advertise)
				}
				return n
			}
			n1 := open("n1", true)
			n2 := open("n2", false)
			if !poll(10*time.Second, n1.IsLeader) {
				t.Fatal("n1 did not lead its own one-node cluster")
			}
			if err := n1.AddVoter("n2", n2.RaftAddr()); err != nil {
				t.Fatalf("add n2: %v", err)
			}
			servers, err := n1.Servers()
			if err != nil {
				t.Fatal(err)
			}
			if servers["n2"] != n2.RaftAddr() || servers["n1"] != n1.RaftAddr() {
				t.Fatalf("the configuration holds %v, not the advertised names", servers)
			}
			// Two voters: a commit needs n2's acknowledgement, which needs
			// n1 to have dialled "localhost:<port>".
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := n1.Apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: "by-name", RequestID: "r1", TTL: time.Minute})
			if err != nil || res.Lease == nil {
				t.Fatalf("grant with n2 reached by name: %v %+v", err, res)
			}
			if !poll(10*time.Second, func() bool { return n2.Machine().Outcome("r1").Lease != nil }) {
				t.Fatal("n2 never applied the grant")
			}
		})
	}
}

// testPeerTLS returns each node's Raft TLS, from a fresh CA whose
// certificates name no host at all: peers are checked by identity.
func testPeerTLS(t *testing.T) func(instance string) *TLS {
	t.Helper()
	now := time.Now()
	ca, err := identity.NewCA("payonce test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return func(instance string) *TLS {
		dir := t.TempDir()
		if err := ca.WriteCA(dir); err != nil {
			t.Fatal(err)
		}
		f, err := ca.WriteParty(dir, identity.Party{ID: identity.ID{Service: identity.Coordinator, Instance: instance}}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		server, err := identity.ServerConfig(f, identity.AllowServices(identity.Coordinator))
		if err != nil {
			t.Fatal(err)
		}
		client, err := identity.ClientConfig(f, identity.Coordinator)
		if err != nil {
			t.Fatal(err)
		}
		return &TLS{Server: server, Client: client}
	}
}
