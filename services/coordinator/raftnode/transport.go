package raftnode

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/payonce/payonce/internal/identity"
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

// stream is the raft.StreamLayer under every node's NetworkTransport,
// over TLS (the TLS configuration) or, in dev mode only, plain TCP. The
// NetworkTransport above it is the same either way, so the heartbeat
// handling (serialHeartbeats, ADR 0004) and every other wrapper see the
// same transport.
type stream struct {
	net.Listener // over TLS a tls.NewListener: Accept returns connections whose handshake runs on first read
	advertise    net.Addr
	client       *tls.Config // nil: plain TCP
}

// newStream listens on bind, over TLS when cfg is not nil. The handshake
// of an accepted connection runs on the transport's per-connection
// goroutine (its first read), never in Accept, so a peer that connects and
// stalls delays nobody else.
//
// name, when not empty, is the advertised address as configured
// ("coordinator-2:7000"): the stream advertises it as given, not resolved,
// so that peers dial the name and reach the node at whatever address it has
// now. A container restarted by compose or Kubernetes may come back on
// another IP; a configuration holding the old IP would leave the node
// unreachable by the leader for good (the compose e2e's restarted
// coordinator-2 did: its IP moved from .11 to .7). hashicorp/raft's own
// TCP transport cannot do this (it requires an IP), which is why plain TCP
// goes through this layer too. Over TLS the peer's certificate is checked
// by identity (peerClientConfig), so any address will do.
func newStream(bind string, advertise net.Addr, name string, cfg *TLS) (*stream, error) {
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
	if name != "" {
		advertise = hostAddr(name)
	}
	if cfg == nil {
		return &stream{Listener: ln, advertise: advertise}, nil
	}
	return &stream{Listener: tls.NewListener(ln, cfg.Server), advertise: advertise, client: peerClientConfig(cfg.Client)}, nil
}

// hostAddr is an advertised "host:port" kept as written, so that
// hashicorp/raft records and dials the name rather than one resolution of it.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

// peerClientConfig is client for dialing Raft peers. hashicorp/raft dials a
// peer at the IP address it advertises, and a node's certificate, made
// before its container had an address (compose, Kubernetes), cannot name
// it: verifying the host name would refuse every honest peer. A peer is
// authenticated by what identifies it instead (identity.ByIdentity): a
// chain that ends at the CA (client.RootCAs), then client's own identity
// check (VerifyConnection: a coordinator node). Only the host-name match
// is dropped; a certificate from another CA or of another party still
// fails the handshake. Service instances forwarding to each other use the
// same helper.
func peerClientConfig(client *tls.Config) *tls.Config {
	return identity.ByIdentity(client)
}

// Addr is the address peers dial to reach this node.
func (s *stream) Addr() net.Addr { return s.advertise }

// Dial connects to a peer within timeout; over TLS it completes the
// handshake too, so a peer that is not what the CA says it is fails here,
// not in the middle of an RPC.
func (s *stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.client == nil {
		return net.DialTimeout("tcp", string(address), timeout)
	}
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, "tcp", string(address))
}
