// Package linkcut cuts links between Raft nodes under test: a wrapper
// around a node's raft.Transport that refuses RPCs on cut links, and loses
// the answers that cross a link cut while their request was out. It is the
// one implementation the coordinator's tests share: raftnode's own tests
// (which cannot import coordinatortest, since it imports raftnode) and,
// through coordinatortest.Network, the API and pkg/lock tests.
package linkcut

import (
	"errors"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrLinkCut is what a Raft RPC over a cut link returns, like a connection
// refused.
var ErrLinkCut = errors.New("linkcut: link cut")

// Network decides which links between Raft nodes carry traffic, so a test
// can partition a cluster while clients keep calling it. Wrap every node's
// transport with Wrap, then cut and heal links by Raft address at any time.
//
// Only Raft RPCs between nodes are cut. A cut is made on the sending side,
// in both directions; an answer that crosses a link cut while its request
// was out is lost too, as on a real network (a heartbeat sent just before a
// partition must not confirm a leadership check made after it), and so is
// a pipelined answer that arrives once the link is cut.
type Network struct {
	mu  sync.Mutex
	cut map[[2]raft.ServerAddress]bool
}

// NewNetwork returns a network with every link up.
func NewNetwork() *Network {
	return &Network{cut: map[[2]raft.ServerAddress]bool{}}
}

// Wrap returns t behind the network: its RPCs to a node across a cut link
// fail with ErrLinkCut.
func (n *Network) Wrap(t raft.Transport) raft.Transport {
	return &faultyTransport{Transport: t, net: n}
}

// Cut cuts the link between a and b, both ways.
func (n *Network) Cut(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]raft.ServerAddress{raft.ServerAddress(a), raft.ServerAddress(b)}] = true
	n.cut[[2]raft.ServerAddress{raft.ServerAddress(b), raft.ServerAddress(a)}] = true
}

// Isolate cuts every link between addr and the others.
func (n *Network) Isolate(addr string, others ...string) {
	for _, o := range others {
		if o != addr {
			n.Cut(addr, o)
		}
	}
}

// Heal brings every link back up.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]raft.ServerAddress]bool{}
}

func (n *Network) blocked(from, to raft.ServerAddress) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[[2]raft.ServerAddress{from, to}]
}

// faultyTransport drops outgoing RPCs on cut links.
type faultyTransport struct {
	raft.Transport
	net *Network
}

func (f *faultyTransport) check(target raft.ServerAddress) error {
	if f.net.blocked(f.LocalAddr(), target) {
		return ErrLinkCut
	}
	return nil
}

func (f *faultyTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if err := f.check(target); err != nil {
		return nil, err
	}
	p, err := f.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &faultyPipeline{AppendPipeline: p, check: func() error { return f.check(target) }, closed: make(chan struct{})}, nil
}

func (f *faultyTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, a *raft.AppendEntriesRequest, r *raft.AppendEntriesResponse) error {
	if err := f.check(target); err != nil {
		return err
	}
	if err := f.Transport.AppendEntries(id, target, a, r); err != nil {
		return err
	}
	return f.check(target) // the answer crossed a link cut meanwhile: lost
}

func (f *faultyTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, a *raft.RequestVoteRequest, r *raft.RequestVoteResponse) error {
	if err := f.check(target); err != nil {
		return err
	}
	if err := f.Transport.RequestVote(id, target, a, r); err != nil {
		return err
	}
	return f.check(target)
}

func (f *faultyTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, a *raft.RequestPreVoteRequest, r *raft.RequestPreVoteResponse) error {
	if err := f.check(target); err != nil {
		return err
	}
	pv, ok := f.Transport.(raft.WithPreVote)
	if !ok {
		return errors.New("linkcut: the transport has no pre-vote")
	}
	if err := pv.RequestPreVote(id, target, a, r); err != nil {
		return err
	}
	return f.check(target)
}

func (f *faultyTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, a *raft.InstallSnapshotRequest, r *raft.InstallSnapshotResponse, data io.Reader) error {
	if err := f.check(target); err != nil {
		return err
	}
	if err := f.Transport.InstallSnapshot(id, target, a, r, data); err != nil {
		return err
	}
	return f.check(target)
}

func (f *faultyTransport) TimeoutNow(id raft.ServerID, target raft.ServerAddress, a *raft.TimeoutNowRequest, r *raft.TimeoutNowResponse) error {
	if err := f.check(target); err != nil {
		return err
	}
	return f.Transport.TimeoutNow(id, target, a, r)
}

// Close closes the wrapped transport, as raft expects of a WithClose one.
func (f *faultyTransport) Close() error {
	if c, ok := f.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// faultyPipeline refuses to send on a cut link, and loses the answers that
// arrive once the link is cut: hashicorp/raft counts a pipelined answer as
// a confirmation of leadership, so one sent before a cut must not confirm a
// leadership check made after it.
type faultyPipeline struct {
	raft.AppendPipeline
	check func() error

	once   sync.Once
	out    chan raft.AppendFuture
	closed chan struct{}
	close  sync.Once
}

func (p *faultyPipeline) AppendEntries(a *raft.AppendEntriesRequest, r *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	return p.AppendPipeline.AppendEntries(a, r)
}

// Consumer passes on the answers whose link is still up.
func (p *faultyPipeline) Consumer() <-chan raft.AppendFuture {
	p.once.Do(func() {
		p.out = make(chan raft.AppendFuture)
		in := p.AppendPipeline.Consumer()
		go func() {
			for {
				select {
				case f := <-in:
					if p.check() != nil {
						continue // lost on the cut link
					}
					select {
					case p.out <- f:
					case <-p.closed:
						return
					}
				case <-p.closed:
					return
				}
			}
		}()
	})
	return p.out
}

// Close ends the consumer and closes the wrapped pipeline.
func (p *faultyPipeline) Close() error {
	p.close.Do(func() { close(p.closed) })
	return p.AppendPipeline.Close()
}
