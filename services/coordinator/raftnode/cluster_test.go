package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/fsm"
	"github.com/payonce/payonce/services/coordinator/internal/linkcut"
)

// testLogStore is the log store every test node uses: the default, or the
// one PAYONCE_TEST_LOG_STORE names, so the whole suite runs against either
// (PAYONCE_TEST_LOG_STORE=wal go test ./services/coordinator/...).
var testLogStore = os.Getenv("PAYONCE_TEST_LOG_STORE")

// cluster is three real Raft nodes over loopback TCP in this process.
type cluster struct {
	t     *testing.T
	peers []Peer
	dirs  []string
	net   *linkcut.Network
	mu    sync.Mutex
	nodes []*Node // nil while a node is down
	tune  func(*Config)
	// wiped marks nodes whose data directory was lost: they restart
	// without the instruction to bootstrap.
	wiped map[int]bool
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newCluster(t *testing.T, size int, tune func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, net: linkcut.NewNetwork(), tune: tune, wiped: map[int]bool{}}
	base := t.TempDir()
	for i := range size {
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("n%d", i+1), Addr: freeAddr(t)})
		c.dirs = append(c.dirs, filepath.Join(base, fmt.Sprintf("n%d", i+1)))
	}
	c.nodes = make([]*Node, size)
	for i := range size {
		c.start(i)
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) config(i int) Config {
	cfg := Config{
		ID: c.peers[i].ID, Bind: c.peers[i].Addr, DataDir: c.dirs[i], LogStore: testLogStore, Peers: c.peers, Bootstrap: !c.wipedNode(i),
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		TickInterval: 25 * time.Millisecond, LogOutput: io.Discard,
		WrapTransport: c.net.Wrap,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

func (c *cluster) start(i int) {
	c.t.Helper()
	// The port was free a moment ago; a restarted node reuses its own.
	var n *Node
	var err error
	poll(2*time.Second, func() bool {
		n, err = Open(c.config(i))
		return err == nil
	})
	if err != nil {
		c.t.Fatalf("start %s: %v", c.peers[i].ID, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
}

func (c *cluster) kill(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		_ = n.Close()
	}
}

// wipe kills node i and deletes its data directory, like a lost disk; the
// node restarts (start) without the instruction to bootstrap.
func (c *cluster) wipe(i int) {
	c.t.Helper()
	c.kill(i)
	if err := os.RemoveAll(c.dirs[i]); err != nil {
		c.t.Fatal(err)
	}
	c.mu.Lock()
	c.wiped[i] = true
	c.mu.Unlock()
}

func (c *cluster) wipedNode(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wiped[i]
}

func (c *cluster) stopAll() {
	for i := range c.nodes {
		c.kill(i)
	}
}

func (c *cluster) node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *cluster) addrs() []string {
	var out []string
	for _, p := range c.peers {
		out = append(out, p.Addr)
	}
	return out
}

// waitLeader waits until exactly one live node, not in excluded, leads and
// has applied an entry of its own term, and returns its index.
func (c *cluster) waitLeader(timeout time.Duration, excluded ...int) int {
	c.t.Helper()
	leader := -1
	found := poll(timeout, func() bool {
		for i := range c.peers {
			n := c.node(i)
			if n == nil || !n.IsLeader() || contains(excluded, i) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := n.ReadBarrier(ctx)
			cancel()
			if err == nil {
				leader = i
				return true
			}
		}
		return false
	})
	if !found {
		c.t.Fatalf("no leader within %v", timeout)
	}
	return leader
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// apply sends cmd to whichever node leads, retrying on "not leader" until
// ctx ends: what a client does.
func (c *cluster) apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	for {
		for i := range c.peers {
			n := c.node(i)
			if n == nil || !n.IsLeader() {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, time.Second)
			res, err := n.Apply(actx, cmd)
			cancel()
			if err == nil {
				return res, nil
			}
		}
		select {
		case <-ctx.Done():
			return fsm.Result{}, ctx.Err()
		case <-time.After(10 * time.Millisecond): // back off while no leader is known
		}
	}
}

// grant acquires and immediately releases lock name, returning the token.
func (c *cluster) grant(ctx context.Context, name, rid string) coordinator.FenceToken {
	c.t.Helper()
	res, err := c.apply(ctx, fsm.Command{Op: fsm.OpAcquire, Lock: name, RequestID: rid, TTL: time.Minute})
	if err != nil || res.Err != nil || res.Lease == nil {
		c.t.Fatalf("acquire %s: %v %+v", name, err, res)
	}
	// apply asks again when an answer takes over a second; on a loaded
	// machine the first release may have committed meanwhile, and the
	// second then finds the lock gone. Gone is what a release leaves.
	if res2, err := c.apply(ctx, fsm.Command{Op: fsm.OpRelease, Lock: name, LeaseID: res.Lease.ID}); err != nil || (res2.Err != nil && !errors.Is(res2.Err, coordinator.ErrLockNotFound)) {
		c.t.Fatalf("release %s: %v %+v", name, err, res2)
	}
	return res.Lease.Token
}

// waitConverged waits until every live node's machine is at the same index
// and returns that index and the nodes' state hashes at it.
func (c *cluster) waitConverged(timeout time.Duration) (uint64, map[string]string) {
	c.t.Helper()
	var idx uint64
	var hashes map[string]string
	ok := poll(timeout, func() bool {
		hashes = map[string]string{}
		idx = 0
		for i := range c.peers {
			n := c.node(i)
			if n == nil {
				continue
			}
			j, h := n.Machine().IndexHash()
			if idx != 0 && j != idx {
				return false
			}
			idx = j
			hashes[n.ID()] = h
		}
		return true
	})
	if !ok {
		c.t.Fatalf("replicas did not reach the same index within %v", timeout)
	}
	return idx, hashes
}

// poll calls cond every few milliseconds until it holds or timeout passes.
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}
