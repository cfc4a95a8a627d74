package raftnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// serialHeartbeats wraps a transport so that heartbeats are not handled on the
// connection's goroutine (NetworkTransport's "fast path") but go through the
// consumer channel to Raft's main loop like every other RPC.
//
// Why: hashicorp/raft issue #695 (open, no fix released in v1.7.3 or v1.8.0)
// is a log-divergence bug found by Antithesis: a heartbeat processed on the
// fast path can bump the follower's term while the main loop is in the middle
// of handling another RPC, and the two race. Without the fast path every RPC
// is processed by the one main-loop goroutine, so the race cannot happen. The
// price is that a heartbeat may queue behind a large AppendEntries; with
// election timeouts of hundreds of milliseconds and small entries that delay
// is far below what would trigger an election. See ADR 0004.
type serialHeartbeats struct {
	raft.Transport
}

// SetHeartbeatHandler deliberately ignores the handler: see the type comment.
func (serialHeartbeats) SetHeartbeatHandler(func(raft.RPC)) {}

// RequestPreVote forwards pre-vote requests; raft enables pre-vote only when
// the transport implements raft.WithPreVote, so the wrapper must too.
func (t serialHeartbeats) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if pv, ok := t.Transport.(raft.WithPreVote); ok {
		return pv.RequestPreVote(id, target, args, resp)
	}
	return raft.ErrUnsupportedProtocol
}

// Close closes the wrapped transport's listener and connections, which
// raft.Raft.Shutdown does only for transports implementing raft.WithClose.
func (t serialHeartbeats) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

var (
	_ raft.WithPreVote = serialHeartbeats{}
	_ raft.WithClose   = serialHeartbeats{}
)

// TLS is the mutual TLS of the Raft transport. Server is used on the
// connections the node accepts (it must require and verify a client
// certificate, and admit coordinator identities only); Client on those it
// dials (it presents the node's certificate and checks the peer's). With
// it, a process without a certificate from the cluster's CA cannot send a
// vote request, an AppendEntries or a snapshot: its handshake fails before
// hashicorp/raft reads a byte.
type TLS struct {
	Server *tls.Config
	Client *tls.Config
}

// tlsStream is a raft.StreamLayer over TLS. The NetworkTransport above it
// is unchanged, so the heartbeat handling (serialHeartbeats, ADR 0004) and
// every other wrapper see the same transport as over plain TCP.
type tlsStream struct {
	net.Listener // a tls.NewListener: Accept returns connections whose handshake runs on first read
	advertise    net.Addr
	client       *tls.Config
}

// newTLSStream listens on bind. The handshake of an accepted connection
// runs on the transport's per-connection goroutine (its first read), never
// in Accept, so a peer that connects and stalls delays nobody else.
func newTLSStream(bind string, advertise net.Addr, cfg TLS) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if advertise == nil {
		advertise = ln.Addr()
	}
	if a, ok := advertise.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raftnode: advertise address %v is not a routable address", advertise)
	}
	return &tlsStream{Listener: tls.NewListener(ln, cfg.Server), advertise: advertise, client: cfg.Client}, nil
}

// Addr is the address peers dial to reach this node.
func (s *tlsStream) Addr() net.Addr { return s.advertise }

// Dial connects to a peer and completes the handshake within timeout, so a
// peer that is not what the CA says it is fails here, not in the middle of
// an RPC.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(address))
}
