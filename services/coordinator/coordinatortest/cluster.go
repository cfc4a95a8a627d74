// Package coordinatortest starts a real coordinator cluster inside a test
// process: hashicorp/raft nodes over loopback TCP, each with its HTTP API on
// a loopback port, wired exactly as cmd/coordinator wires them. Tests of the
// API and of the pkg/lock client use it; timeouts are short so that a leader
// change takes a few hundred milliseconds.
package coordinatortest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/proc"
	"github.com/payonce/payonce/services/coordinator"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// LogStoreEnv names the environment variable that picks the nodes' log
// store ("bolt" or "wal"; empty means raftnode.DefaultLogStore), so the
// same tests run against either.
const LogStoreEnv = "PAYONCE_TEST_LOG_STORE"

// Cluster is a running test cluster.
type Cluster struct {
	t         testing.TB
	peers     []raftnode.Peer
	httpAddrs []string
	dirs      []string

	mu      sync.Mutex
	nodes   []*raftnode.Node
	servers []*http.Server
	cancels cancelGate
	wiped   map[int]bool
	tune    func(*raftnode.Config)

	// pki is the cluster's CA and certificates when it runs with TLS.
	pki *PKI
}

// Options adjusts a test cluster.
type Options struct {
	// Tune, if set, changes each node's configuration before it starts
	// (snapshot thresholds, trailing logs, timeouts).
	Tune func(*raftnode.Config)
	// TLS runs the cluster as cmd/coordinator does with TLS_* set: the API
	// over HTTPS asking for client certificates, authorisation by identity
	// (coordinator.DefaultPolicy), Raft over mutual TLS. Clients get their
	// certificates from Cluster.PKI.
	TLS bool
}

// cancelGate holds the cancel-wait proposals of every node while closed.
type cancelGate struct {
	mu      sync.Mutex
	open    chan struct{} // nil while cancels pass
	held    int
	applied sync.WaitGroup
}

func (g *cancelGate) intercept(apply func()) {
	g.mu.Lock()
	ch := g.open
	if ch != nil {
		g.held++
		g.applied.Add(1)
	}
	g.mu.Unlock()
	if ch == nil {
		apply()
		return
	}
	defer g.applied.Done()
	<-ch
	apply()
}

// CancelHold is a hold on the cluster's cancel-wait entries (see
// HoldCancelWaits).
type CancelHold struct{ g *cancelGate }

// HoldCancelWaits makes every node hold back the cancel-wait entry that a
// wait proposes when its caller gives up, until Release: tests use it to
// land a cancel after the caller's retry, the order that once ended the
// retry's lease.
func (c *Cluster) HoldCancelWaits() *CancelHold {
	c.cancels.mu.Lock()
	defer c.cancels.mu.Unlock()
	if c.cancels.open == nil {
		c.cancels.open = make(chan struct{})
	}
	return &CancelHold{g: &c.cancels}
}

// Held returns how many cancels are being held.
func (h *CancelHold) Held() int {
	h.g.mu.Lock()
	defer h.g.mu.Unlock()
	return h.g.held
}

// Release lets the held cancels through and returns once each has been
// proposed and its outcome is known.
func (h *CancelHold) Release() {
	h.g.mu.Lock()
	if h.g.open != nil {
		close(h.g.open)
		h.g.open = nil
	}
	h.g.held = 0
	h.g.mu.Unlock()
	h.g.applied.Wait()
}

// Start starts size nodes and waits for a leader. They stop when the test ends.
func Start(t testing.TB, size int) *Cluster {
	t.Helper()
	return StartWith(t, size, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, size int, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{t: t, nodes: make([]*raftnode.Node, size), servers: make([]*http.Server, size), wiped: map[int]bool{}, tune: opts.Tune}
	base := t.TempDir()
	if opts.TLS {
		c.pki = NewPKI(t)
		for i := range size {
			c.pki.Issue(identity.ID{Service: identity.Coordinator, Instance: fmt.Sprintf("c%d", i+1)})
		}
	}
	for i := range size {
		c.peers = append(c.peers, raftnode.Peer{ID: fmt.Sprintf("c%d", i+1), Addr: freeAddr(t)})
		c.httpAddrs = append(c.httpAddrs, freeAddr(t))
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("c%d", i+1)))
	}
	for i := range size {
		c.Restart(i)
	}
	t.Cleanup(func() {
		for i := range size {
			c.Kill(i)
		}
	})
	c.WaitLeader(10 * time.Second)
	return c
}

// freeAddr is an address for a node to bind later, drawn outside the
// kernel's ephemeral range (proc.FreePort says why).
func freeAddr(t testing.TB) string {
	p, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// URLs returns every node's HTTP base URL.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.httpAddrs))
	for i := range c.httpAddrs {
		out[i] = c.URL(i)
	}
	return out
}

// URL returns node i's HTTP base URL (https:// when the cluster runs
// with TLS).
func (c *Cluster) URL(i int) string {
	if c.pki != nil {
		return "https://" + c.httpAddrs[i]
	}
	return "http://" + c.httpAddrs[i]
}

// PKI returns the cluster's CA and certificates, or nil without TLS.
func (c *Cluster) PKI() *PKI { return c.pki }

// Node returns node i, or nil while it is down.
func (c *Cluster) Node(i int) *raftnode.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Restart starts node i (again) on its ports and data directory.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	peers := map[string]string{}
	for j, p := range c.peers {
		peers[p.ID] = c.URL(j)
	}
	var (
		raftTLS       *raftnode.TLS
		serverTLS     *tls.Config
		peerTransport http.RoundTripper
		peerClient    *http.Client
		policy        coordinator.Policy
	)
	if c.pki != nil {
		self := c.pki.Files(identity.ID{Service: identity.Coordinator, Instance: c.peers[i].ID})
		raftTLS = c.pki.RaftTLS(self)
		serverTLS = must(c.t, func() (*tls.Config, error) { return identity.APIServerConfig(self) })
		peerTransport = must(c.t, func() (*http.Client, error) { return identity.HTTPClient(self, 0, identity.Coordinator) }).Transport
		peerClient = must(c.t, func() (*http.Client, error) { return identity.HTTPClient(self, 2*time.Second, identity.Coordinator) })
		policy = coordinator.DefaultPolicy()
	}
	var (
		node *raftnode.Node
		ln   net.Listener
		err  error
	)
	c.mu.Lock()
	wiped := c.wiped[i]
	c.mu.Unlock()
	// A port just released by Kill may take a moment to bind again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		cfg := raftnode.Config{
			ID: c.peers[i].ID, Bind: c.peers[i].Addr, DataDir: c.dirs[i], LogStore: os.Getenv(LogStoreEnv), Peers: c.peers, Bootstrap: !wiped,
			HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
			TickInterval: 25 * time.Millisecond, LogOutput: io.Discard, TLS: raftTLS,
		}
		if c.tune != nil {
			c.tune(&cfg)
		}
		node, err = raftnode.Open(cfg)
		if err == nil {
			if ln, err = net.Listen("tcp", c.httpAddrs[i]); err == nil {
				if serverTLS != nil {
					ln = tls.NewListener(ln, serverTLS)
				}
				break
			}
			node.Close()
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("start node %d: %v", i, err)
		}
		<-time.After(20 * time.Millisecond) // retry interval while the port frees up
	}
	srv := &http.Server{Handler: coordhttp.NewAPI(coordhttp.APIConfig{
		Service: raftnode.NewService(node, raftnode.InterceptCancelWait(c.cancels.intercept)), Cluster: node, Peers: peers,
		Policy: policy, PeerTransport: peerTransport, PeerClient: peerClient,
	}), ReadHeaderTimeout: 5 * time.Second}
	if c.pki != nil {
		srv.ErrorLog = quietTLSLog
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			c.t.Errorf("serve node %d: %v", i, err)
		}
	}()
	c.mu.Lock()
	c.nodes[i], c.servers[i] = node, srv
	c.mu.Unlock()
}

// Wipe kills node i and deletes its data directory, like a lost disk. The
// next Restart starts it without the instruction to bootstrap, so it joins
// and waits to be admitted (POST /v1/cluster/voters on the leader).
func (c *Cluster) Wipe(i int) {
	c.t.Helper()
	c.Kill(i)
	if err := os.RemoveAll(c.dirs[i]); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.wiped[i] = true
	c.mu.Unlock()
}

// RaftAddr returns node i's Raft address.
func (c *Cluster) RaftAddr(i int) string { return c.peers[i].Addr }

// Kill stops node i abruptly: its HTTP server closes its connections and
// its Raft node shuts down without handing leadership over.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	node, srv := c.nodes[i], c.servers[i]
	c.nodes[i], c.servers[i] = nil, nil
	c.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
	if node != nil {
		_ = node.Close()
	}
}

// WaitLeader waits until a live node leads and has confirmed it with a
// majority, and returns its index.
func (c *Cluster) WaitLeader(timeout time.Duration) int {
	c.t.Helper()
	return c.WaitLeaderOtherThan(-1, timeout)
}

// WaitLeaderOtherThan waits until a live node other than node old leads and
// has confirmed it with a majority, and returns its index: after old is cut
// off, the majority's new leader. Asking old itself would race its last
// heartbeat: hashicorp/raft lets an answer to a heartbeat sent before the cut
// confirm a leadership check made just after it, so old may still confirm
// once; what shows the partition happened is a new leader on the other side.
func (c *Cluster) WaitLeaderOtherThan(old int, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i := range c.peers {
			n := c.Node(i)
			if i == old || n == nil || !n.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := n.ReadBarrier(ctx)
			cancel()
			if err == nil {
				return i
			}
		}
		<-time.After(5 * time.Millisecond) // polling interval of a bounded wait
	}
	c.t.Fatalf("no leader within %v", timeout)
	return -1
}

// Follower returns the index of a live node that is not the leader.
func (c *Cluster) Follower() int {
	l := c.WaitLeader(10 * time.Second)
	for i := range c.peers {
		if i != l && c.Node(i) != nil {
			return i
		}
	}
	c.t.Fatal("no live follower")
	return -1
}
