package coordinatortest

import (
	"github.com/hashicorp/raft"

	"github.com/payonce/payonce/services/coordinator/internal/linkcut"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// ErrLinkCut is what a Raft RPC over a cut link returns, like a connection
// refused.
var ErrLinkCut = linkcut.ErrLinkCut

// Network decides which links between the cluster's nodes carry Raft
// traffic, so a test can partition the cluster while clients keep calling
// it. Install it with Network.Tune from Options.Tune, then cut and heal links
// by Raft address (Cluster.RaftAddr) at any time (Cut, Isolate, Heal).
//
// Only Raft RPCs between nodes are cut: a client still reaches every node's
// HTTP API, and a node still forwards to the leader it believes in, so a
// client may be talking to the minority side, which is the case worth
// testing. How a cut behaves (answers crossing it are lost too) is
// linkcut's, which raftnode's own tests use as well.
type Network struct{ *linkcut.Network }

// NewNetwork returns a network with every link up.
func NewNetwork() *Network { return &Network{linkcut.NewNetwork()} }

// Tune installs the network into a node's configuration (on top of any
// WrapTransport already set); call it from Options.Tune.
func (n *Network) Tune(cfg *raftnode.Config) {
	inner := cfg.WrapTransport
	cfg.WrapTransport = func(t raft.Transport) raft.Transport {
		if inner != nil {
			t = inner(t)
		}
		return n.Wrap(t)
	}
}
