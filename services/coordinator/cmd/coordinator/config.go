package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// config is every setting of a coordinator node, read from the environment
// in this one place. The table in docs/coordinator.md mirrors it.
type config struct {
	// COORDINATOR_NODE_ID (required): this node's Raft server id, e.g. "c1".
	NodeID string
	// COORDINATOR_PEERS (required): the static cluster, identical on every
	// node, as comma-separated id=raft_host:port=http_base_url entries, e.g.
	// "c1=coordinator-1:7000=http://coordinator-1:8080,...". Used to
	// bootstrap a node with no state and to forward writes to the leader.
	Peers []peer
	// COORDINATOR_BOOTSTRAP (false): create a new cluster if this node's
	// data dir holds no state and no peer is already a member of one. Set
	// it on one node only; the others start joining and its leader admits
	// them. A node with no state and without it never bootstraps: its data
	// dir may be a lost disk (it joins and waits to be admitted).
	Bootstrap bool
	// COORDINATOR_EPOCH (0: the bootstrap time in ms): the cluster epoch the
	// first leader writes; set it above the old one's when rebuilding a
	// cluster from nothing on hosts whose clocks you do not trust.
	Epoch uint64
	// COORDINATOR_RAFT_BIND (default "127.0.0.1:7000"): Raft listen address.
	RaftBind string
	// COORDINATOR_RAFT_ADVERTISE (default: this node's address in
	// COORDINATOR_PEERS): the address peers dial.
	RaftAdvertise string
	// COORDINATOR_HTTP_ADDR (default "127.0.0.1:8080"): API listen address.
	HTTPAddr string
	// COORDINATOR_DATA_DIR (default "data/<node id>"): Raft log and snapshots.
	DataDir string
	// COORDINATOR_LOG_STORE (default: the store the data dir holds, "wal"
	// for a new one): "wal" (raft-wal, wal/) or "bolt" (raft-boltdb,
	// raft.db). A data dir keeps the store it was created with.
	LogStore string
	// COORDINATOR_HEARTBEAT_TIMEOUT (500ms), COORDINATOR_ELECTION_TIMEOUT
	// (500ms), COORDINATOR_LEADER_LEASE_TIMEOUT (250ms): Raft timing
	// (raftnode.Default*). A dead leader is replaced after one to two
	// heartbeat timeouts.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// COORDINATOR_TICK_INTERVAL (100ms): how late at most a lease expires.
	TickInterval time.Duration
	// COORDINATOR_SNAPSHOT_THRESHOLD (8192): entries between snapshots.
	SnapshotThreshold int
	// COORDINATOR_HEARTBEAT_FAST_PATH (false): re-enable the heartbeat fast
	// path that hashicorp/raft#695 makes unsafe (see ADR 0004).
	HeartbeatFastPath bool
	// COORDINATOR_RAFT_LOG_LEVEL (default "warn"): hashicorp/raft's logs.
	RaftLogLevel string
	// COORDINATOR_SHUTDOWN_GRACE (10s): time in-flight requests get on stop.
	ShutdownGrace time.Duration
	// TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE (required outside dev mode):
	// this node's identity (spiffe://payonce/coordinator/<node id>) and the
	// CA it trusts. With them the API is served over HTTPS, asks for client
	// certificates and authorises by identity (coordinator.Policy), and Raft
	// runs over mutual TLS admitting coordinator identities only; the
	// http_base_urls in COORDINATOR_PEERS must then be https://.
	TLS *identity.Files
	// PAYONCE_DEV_MODE (false): a laptop stack. Only then may a node run
	// without TLS_*: plain HTTP and Raft, every caller unauthenticated.
	// Without it a node with no certificate refuses to start, so a
	// deployment cannot leave the cluster open by forgetting three
	// variables.
	DevMode bool
	// COORDINATOR_MAX_LEASE_TTL (1m), COORDINATOR_MAX_WAIT (1m),
	// COORDINATOR_MAX_LOCKS_PER_IDENTITY (1024): what one identity may ask
	// for with TLS on (coordinator.DefaultPolicy).
	Policy coordinator.Policy
}

// ErrNoTLS is the refusal to run a node without its certificate outside
// dev mode.
var ErrNoTLS = errors.New("no TLS: set TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE to this node's certificate, key and CA " +
	"(payonce-certs makes a development set; docs/security.md), or PAYONCE_DEV_MODE=true for a laptop cluster " +
	"that anyone who reaches its ports may use")

type peer struct {
	ID, RaftAddr, HTTPURL string
}

func loadConfig(getenv func(string) string) (config, error) {
	r := envconfig.New(getenv)
	c := config{
		NodeID:             r.Required("COORDINATOR_NODE_ID"),
		RaftBind:           r.String("COORDINATOR_RAFT_BIND", "127.0.0.1:7000"),
		Bootstrap:          r.Bool("COORDINATOR_BOOTSTRAP", false),
		Epoch:              uint64(r.Int("COORDINATOR_EPOCH", 0)),
		RaftAdvertise:      r.String("COORDINATOR_RAFT_ADVERTISE", ""),
		HTTPAddr:           r.String("COORDINATOR_HTTP_ADDR", "127.0.0.1:8080"),
		HeartbeatTimeout:   r.Duration("COORDINATOR_HEARTBEAT_TIMEOUT", raftnode.DefaultHeartbeatTimeout),
		ElectionTimeout:    r.Duration("COORDINATOR_ELECTION_TIMEOUT", raftnode.DefaultElectionTimeout),
		LeaderLeaseTimeout: r.Duration("COORDINATOR_LEADER_LEASE_TIMEOUT", raftnode.DefaultLeaderLeaseTimeout),
		TickInterval:       r.Duration("COORDINATOR_TICK_INTERVAL", 100*time.Millisecond),
		SnapshotThreshold:  r.Int("COORDINATOR_SNAPSHOT_THRESHOLD", 8192),
		HeartbeatFastPath:  r.Bool("COORDINATOR_HEARTBEAT_FAST_PATH", false),
		RaftLogLevel:       r.String("COORDINATOR_RAFT_LOG_LEVEL", "warn"),
		LogStore:           r.String("COORDINATOR_LOG_STORE", ""),
		ShutdownGrace:      r.Duration("COORDINATOR_SHUTDOWN_GRACE", 10*time.Second),
		Policy: coordinator.Policy{
			MaxLeaseTTL:       r.Duration("COORDINATOR_MAX_LEASE_TTL", coordinator.DefaultMaxLeaseTTL),
			MaxWait:           r.Duration("COORDINATOR_MAX_WAIT", coordinator.DefaultMaxWait),
			MaxLocksPerCaller: r.Int("COORDINATOR_MAX_LOCKS_PER_IDENTITY", coordinator.DefaultMaxLocksPerCaller),
		},
	}
	files, tlsOn, err := identity.FilesFromEnv(func(k string) string { return r.String(k, "") })
	if err != nil {
		return c, err
	}
	c.DevMode = r.Bool("PAYONCE_DEV_MODE", false)
	switch {
	case tlsOn:
		c.TLS = &files
		c.Policy.Required = true
	case !c.DevMode:
		return c, ErrNoTLS
	}
	c.DataDir = r.String("COORDINATOR_DATA_DIR", "data/"+c.NodeID)
	rawPeers := r.List("COORDINATOR_PEERS", nil)
	if err := r.Err(); err != nil {
		return c, err
	}
	if len(rawPeers) == 0 {
		return c, fmt.Errorf("COORDINATOR_PEERS is required")
	}
	self := false
	for _, raw := range rawPeers {
		parts := strings.SplitN(raw, "=", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
			return c, fmt.Errorf("COORDINATOR_PEERS: %q is not id=raft_host:port=http_base_url", raw)
		}
		if c.TLS != nil && !strings.HasPrefix(parts[2], "https://") {
			return c, fmt.Errorf("COORDINATOR_PEERS: %s's URL %q: want https:// (the API is served over TLS)", parts[0], parts[2])
		}
		c.Peers = append(c.Peers, peer{ID: parts[0], RaftAddr: parts[1], HTTPURL: strings.TrimSuffix(parts[2], "/")})
		if parts[0] == c.NodeID {
			self = true
			if c.RaftAdvertise == "" {
				c.RaftAdvertise = parts[1]
			}
		}
	}
	if !self {
		return c, fmt.Errorf("COORDINATOR_PEERS does not list COORDINATOR_NODE_ID %q", c.NodeID)
	}
	if c.LogStore != "" && c.LogStore != raftnode.LogStoreBolt && c.LogStore != raftnode.LogStoreWAL {
		return c, fmt.Errorf("COORDINATOR_LOG_STORE must be %q or %q, not %q", raftnode.LogStoreBolt, raftnode.LogStoreWAL, c.LogStore)
	}
	if r := c.Epoch; r > 1<<62 {
		return c, fmt.Errorf("COORDINATOR_EPOCH is too large")
	}
	if c.SnapshotThreshold <= 0 {
		return c, fmt.Errorf("COORDINATOR_SNAPSHOT_THRESHOLD must be positive")
	}
	return c, nil
}

func (c config) raftPeers() []raftnode.Peer {
	var out []raftnode.Peer
	for _, p := range c.Peers {
		out = append(out, raftnode.Peer{ID: p.ID, Addr: p.RaftAddr})
	}
	return out
}

func (c config) httpPeers() map[string]string {
	out := map[string]string{}
	for _, p := range c.Peers {
		out[p.ID] = p.HTTPURL
	}
	return out
}
