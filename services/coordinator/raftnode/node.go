package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/fsm"
)

// Peer is one member of the static cluster configuration.
type Peer struct {
	// ID is the node's stable Raft server id.
	ID string
	// Addr is its Raft TCP address, host:port.
	Addr string
}

// Config configures a Node. Every node of a cluster gets the same Peers.
type Config struct {
	// ID is this node's id; it must appear in Peers.
	ID string
	// Bind is the TCP address the Raft transport listens on.
	Bind string
	// Advertise is the address peers dial to reach this node; empty means
	// Bind, which then must not be a wildcard address like 0.0.0.0.
	Advertise string
	// DataDir holds the log and stable store (raft.db, or wal/) and
	// snapshots/.
	DataDir string
	// LogStore names the log and stable store: LogStoreBolt or LogStoreWAL.
	// Empty means the store DataDir already holds, or DefaultLogStore for a
	// new DataDir. Open refuses a DataDir that holds the other store.
	LogStore string
	// Peers is the initial voter set, used only when Bootstrap is set and
	// the node has no state yet.
	Peers []Peer
	// Bootstrap creates a new cluster of Peers if the data directory holds
	// no Raft state. Without it, a node with no state never bootstraps: it
	// starts joining (it refuses to vote) and waits for the leader to admit
	// it, because an empty data directory may be a lost disk, and a node
	// that bootstraps again, or votes, after forgetting its log can lose
	// committed grants (see joining.go).
	Bootstrap bool
	// Epoch is the cluster epoch the first leader writes if the log has
	// none; zero means the leader's wall clock in milliseconds at that
	// moment. An operator rebuilding a cluster from nothing may set it to
	// a value above the old cluster's epoch (see ADR 0010).
	Epoch uint64

	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and CommitTimeout
	// tune Raft; zero means DefaultHeartbeatTimeout, DefaultElectionTimeout,
	// DefaultLeaderLeaseTimeout and hashicorp/raft's 50ms commit timeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many entries since the last snapshot trigger a
	// new one (checked every SnapshotInterval); zero keeps the defaults.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries a snapshot leaves in the log so that
	// slightly lagging followers catch up without a snapshot install.
	TrailingLogs uint64
	// TickInterval is how often the leader writes a tick while anything can
	// expire; a lease ends at most one interval (plus one election, across a
	// failover) late, never early. Default 100ms.
	TickInterval time.Duration
	// NoSync skips fsync of the log (bolt store only): only for benchmarks
	// that compare with a system configured the same way. Never in
	// production.
	NoSync bool
	// HeartbeatFastPath re-enables NetworkTransport's heartbeat fast path,
	// which hashicorp/raft#695 makes unsafe; off by default (see ADR 0004).
	HeartbeatFastPath bool
	// TLS, when set, runs the transport over mutual TLS (see TLS); nil
	// is plain TCP.
	TLS *TLS

	// LogOutput receives Raft's own logs; nil means stderr.
	LogOutput io.Writer
	// LogLevel is Raft's log level ("warn" if empty).
	LogLevel string
	// Metrics receives the node's metrics; nil disables them.
	Metrics *Metrics
	// WrapTransport, if set, wraps the transport; tests use it to inject
	// network faults.
	WrapTransport func(raft.Transport) raft.Transport

	// beforeApply, if set, runs on the FSM goroutine before each batch is
	// applied; tests block in it to hold a replica's machine behind its log.
	beforeApply func()
}

// Raft timing defaults. hashicorp/raft's own (1s, 1s, 500ms) suit WAN
// links; on a LAN they leave locks ungrantable for 2-3 s after a leader
// dies, since a follower waits 1-2 heartbeat timeouts before it stands. Half
// of them still gives a leader ten heartbeats (one every 50 ms) per
// timeout; the integration tests run at 200-300 ms under the race
// detector on two cores without spurious elections. Slow disks or busy
// hosts may want more (COORDINATOR_HEARTBEAT_TIMEOUT and friends).
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
)

// Node is one running coordinator replica.
type Node struct {
	cfg     Config
	raft    *raft.Raft
	machine *fsm.Machine
	trans   raft.Transport
	store   durableStore
	joining *joining
	origin  time.Time
	tracer  trace.Tracer
	metrics *Metrics

	observations chan raft.Observation
	observer     *raft.Observer
	stop         chan struct{}
	wg           sync.WaitGroup
	closeOnce    sync.Once
	closeErr     error
}

// Open starts a node, bootstrapping the cluster from cfg.Peers if this node
// has no Raft state yet.
func Open(cfg Config) (*Node, error) {
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft-" + cfg.ID, Output: cfg.LogOutput, Level: hclog.LevelFromString(cfg.LogLevel)})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.HeartbeatTimeout = DefaultHeartbeatTimeout
	rc.ElectionTimeout = DefaultElectionTimeout
	rc.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	}
	if cfg.ElectionTimeout > 0 {
		rc.ElectionTimeout = cfg.ElectionTimeout
	}
	if cfg.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	}
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}
	// Group commit: the leader takes up to MaxAppendEntries queued proposals
	// at once, writes them with one fsync and ships them in one RPC; the FSM
	// then receives them as one batch. Throughput grows with concurrency.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512

	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("raftnode: data dir: %w", err)
	}
	store, err := openLogStore(cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("raftnode: open log store: %w", err)
	}
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	var advertise net.Addr
	if cfg.Advertise != "" {
		if advertise, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			store.Close()
			return nil, fmt.Errorf("raftnode: advertise address: %w", err)
		}
	}
	var tcp *raft.NetworkTransport
	layer, err := newStream(cfg.Bind, advertise, cfg.Advertise, cfg.TLS)
	if err == nil {
		tcp = raft.NewNetworkTransportWithLogger(layer, 3, 2*time.Second, logger)
	}
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raftnode: listen %s: %w", cfg.Bind, err)
	}
	closeAll := func() { tcp.Close(); store.Close() }
	hasState, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("raftnode: inspect state: %w", err)
	}
	join, err := loadJoining(cfg.DataDir, hasState, cfg.Bootstrap)
	if err != nil {
		closeAll()
		return nil, err
	}
	var trans raft.Transport = tcp
	if !cfg.HeartbeatFastPath {
		trans = serialHeartbeats{Transport: tcp}
	}
	trans = newVoteGuard(trans, join)
	if cfg.WrapTransport != nil {
		trans = cfg.WrapTransport(trans)
	}
	if join.active.Load() {
		logger.Warn("no Raft state and not told to bootstrap: joining; refusing to vote until the leader admits this node (incarnation " + join.incarnation + ")")
	}

	// Only an explicit instruction bootstraps, and only a node without
	// state: a restarted node keeps its log, and an empty data directory
	// without the instruction may be a lost disk (it joins instead).
	if !hasState && cfg.Bootstrap && len(cfg.Peers) > 0 {
		var servers []raft.Server
		for _, p := range cfg.Peers {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		err := raft.BootstrapCluster(rc, logs, store, snaps, trans, raft.Configuration{Servers: servers})
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			closeAll()
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}

	n := &Node{
		cfg: cfg, machine: fsm.New(), trans: trans, store: store, joining: join, origin: time.Now(),
		tracer: otel.Tracer("github.com/payonce/payonce/services/coordinator/raftnode"), metrics: cfg.Metrics,
		observations: make(chan raft.Observation, 16), stop: make(chan struct{}),
	}
	r, err := raft.NewRaft(rc, &batchFSM{m: n.machine, metrics: cfg.Metrics, beforeApply: cfg.beforeApply}, logs, store, snaps, trans)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.raft = r
	n.observer = raft.NewObserver(n.observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.wg.Add(2)
	go n.leaderDuties()
	go n.awaitAdmission(logger)
	return n, nil
}

// awaitAdmission ends joining mode when the machine applies an admit entry
// with this node's incarnation.
func (n *Node) awaitAdmission(logger hclog.Logger) {
	defer n.wg.Done()
	for n.joining.active.Load() {
		changed := n.machine.Changed()
		ok, err := n.joining.admit(n.machine.Admitted(n.cfg.ID))
		if err != nil {
			logger.Error("admission", "error", err)
		}
		if ok {
			logger.Info("admitted by the leader: voting again", "incarnation", n.joining.incarnation)
			return
		}
		select {
		case <-changed:
		case <-n.stop:
			return
		}
	}
}

// Joining reports whether this node is waiting to be admitted (it came up
// with no state and no instruction to bootstrap), and its incarnation.
func (n *Node) Joining() (bool, string) {
	return n.joining.active.Load(), n.joining.incarnation
}

// RefusedVotes counts the vote and pre-vote requests this node refused
// while joining.
func (n *Node) RefusedVotes() int64 { return n.joining.refused.Load() }

// Admit writes the entry that lets server id, joining with incarnation,
// vote again. Only the leader can; call it after the server is in the
// configuration (AddVoter).
func (n *Node) Admit(ctx context.Context, id, incarnation string) error {
	res, err := n.Apply(ctx, fsm.Command{Op: fsm.OpAdmit, Server: id, Incarnation: incarnation})
	if err != nil {
		return err
	}
	return res.Err
}

// now is the leader's clock for stamping commands: monotonic nanoseconds
// since the node started. Only differences within one term matter (see the
// fsm package), so a wall-clock jump cannot expire a lease early.
func (n *Node) now() int64 { return int64(time.Since(n.origin)) }

// leaderDuties proposes tick entries while this node leads: one at once when
// it becomes leader (which rebases log time to its clock) and then one every
// TickInterval while anything can expire.
//
// The periodic tick is what bounds a lease's lateness across a failover. Log
// time moves only when an entry is applied, and a new leader continues it
// from the last applied entry (see the fsm package). If the old leader wrote
// nothing for a while (ticks only when something was due), that idle gap was
// lost at the failover and a crashed holder's lease outlived its TTL by the
// gap, up to a whole TTL. With an entry at least every TickInterval, log time
// lags real time by at most one interval, so a lease ends at most one
// TickInterval plus one election after its deadline. The cost is one small
// log write per interval while leases, waits or registrations exist; an
// empty cluster writes nothing.
func (n *Node) leaderDuties() {
	defer n.wg.Done()
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.observations:
			lo := o.Data.(raft.LeaderObservation)
			if n.metrics != nil {
				n.metrics.LeaderChanges.Inc()
				n.metrics.IsLeader.Set(boolGauge(lo.LeaderID == raft.ServerID(n.cfg.ID)))
			}
			if lo.LeaderID == raft.ServerID(n.cfg.ID) {
				n.tick()
				n.initEpoch()
			}
		case <-ticker.C:
			leading := n.raft.State() == raft.Leader
			if n.metrics != nil {
				// Also here, not only on observations: a node that steps
				// down without seeing a new leader (cut off) must stop
				// counting itself.
				n.metrics.IsLeader.Set(boolGauge(leading))
			}
			if !leading {
				continue
			}
			if n.metrics != nil {
				n.metrics.ActiveLeases.Set(float64(n.machine.ActiveLeases()))
			}
			term, _, _ := n.machine.Clock()
			_, pending := n.machine.NextDeadline()
			// Until this term's first entry is applied the clock belongs to
			// the old leader, so tick to rebase it; afterwards tick while
			// anything can expire.
			if term != n.raft.CurrentTerm() || pending {
				n.tick()
			}
			n.initEpoch()
		}
	}
}

// initEpoch writes the cluster epoch if the log has none yet: the first
// leader after bootstrap fixes it (later init entries change nothing).
func (n *Node) initEpoch() {
	if n.machine.Epoch() != 0 {
		return
	}
	epoch := n.cfg.Epoch
	if epoch == 0 {
		epoch = uint64(time.Now().UnixMilli())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.TickInterval+time.Second)
	defer cancel()
	_, _ = n.Apply(ctx, fsm.Command{Op: fsm.OpInit, Epoch: epoch})
}

func (n *Node) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*n.cfg.TickInterval+time.Second)
	defer cancel()
	_, _ = n.Apply(ctx, fsm.Command{Op: fsm.OpTick})
}

// Apply proposes cmd, stamped with this node's clock, and waits until it is
// committed and applied. It fails with coordinator.ErrNotLeader (wrapped)
// when this node is not the leader or loses leadership before the entry is
// known to have committed; the entry may then still commit, which is why
// acquire carries a request id that makes a retry take effect once.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (fsm.Result, error) {
	ctx, span := n.tracer.Start(ctx, "raft.apply", trace.WithAttributes(attribute.String("coordinator.op", string(cmd.Op))))
	defer span.End()
	if n.raft.State() != raft.Leader {
		span.SetStatus(codes.Error, "not leader")
		return fsm.Result{}, n.notLeader()
	}
	timeout := 5 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	start := time.Now()
	cmd.Now = n.now()
	f := n.raft.Apply(cmd.Encode(), timeout)
	// hashicorp/raft resolves a future only once its entry commits or
	// leadership is lost; an entry still in the batched apply channel when
	// the node shuts down is never resolved. So wait for the future beside
	// ctx and shutdown, never on it alone.
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		span.SetStatus(codes.Error, "unconfirmed")
		return fsm.Result{}, fmt.Errorf("%w (%v)", coordinator.ErrUnconfirmed, ctx.Err())
	case <-n.stop:
		span.SetStatus(codes.Error, "shutdown")
		return fsm.Result{}, fmt.Errorf("%w (node shutting down)", coordinator.ErrUnconfirmed)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown),
			errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return fsm.Result{}, fmt.Errorf("%w (%v)", n.notLeader(), err)
		}
		return fsm.Result{}, fmt.Errorf("raftnode: apply %s: %w", cmd.Op, err)
	}
	res, _ := f.Response().(fsm.Result)
	if n.metrics != nil {
		n.metrics.ApplyLatency.Observe(time.Since(start).Seconds())
		if cmd.Op == fsm.OpAcquire {
			n.metrics.observeAcquire(res.Queued, res.Err == nil && res.Lease != nil)
		}
	}
	span.SetAttributes(attribute.Int64("raft.index", int64(f.Index())))
	return res, nil
}

func (n *Node) notLeader() error {
	_, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id)}
}

// NotLeaderError says this node cannot take writes and names the leader it
// knows of (empty during an election). It unwraps to coordinator.ErrNotLeader.
type NotLeaderError struct {
	// LeaderID is the current leader's id, if known.
	LeaderID string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader; no leader known"
	}
	return "not the leader; leader is " + e.LeaderID
}

// Unwrap makes errors.Is(err, coordinator.ErrNotLeader) hold.
func (e *NotLeaderError) Unwrap() error { return coordinator.ErrNotLeader }

// ReadBarrier makes the next read of the machine linearizable: it confirms
// this node is still the leader (a round trip to a majority) and waits until
// the machine itself has applied every entry the leader had appended before
// that. It compares against the machine's own applied index, never against
// raft.AppliedIndex: hashicorp/raft advances that as soon as an entry is
// queued for the FSM goroutine, so a new leader whose FSM is behind (a GC
// pause, a large batch) would pass it and answer from old state. When the
// machine is behind, or the last entry is one the machine never sees (the
// no-op a new leader appends), it waits on a Barrier, which resolves only
// after the FSM has applied everything before it. Every wait ends with ctx.
func (n *Node) ReadBarrier(ctx context.Context) error {
	ctx, span := n.tracer.Start(ctx, "raft.read_barrier")
	defer span.End()
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	readIndex := n.raft.LastIndex()
	if err := n.await(ctx, n.raft.VerifyLeader()); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if n.machine.Index() >= readIndex {
		return nil
	}
	// The barrier entry commits after everything before it, and its future
	// resolves on the FSM goroutine after the machine has applied all of
	// that (barriers and no-ops themselves never reach the machine, so its
	// index may stay below the log's).
	if err := n.await(ctx, n.raft.Barrier(n.timeout(ctx))); err != nil {
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	return nil
}

// timeout is how long hashicorp/raft may take to enqueue a request: what is
// left of ctx, or 5 s.
func (n *Node) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return 5 * time.Second
}

// await waits for a leadership check or barrier beside ctx and shutdown (a
// future is resolved only when Raft gets to it, which a held-back FSM or a
// lost majority can delay indefinitely). Failing to confirm is reported as
// not-leader or unconfirmed, both of which a client retries.
func (n *Node) await(ctx context.Context, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("%w (%v)", n.notLeader(), err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (%v)", coordinator.ErrUnconfirmed, context.Cause(ctx))
	case <-n.stop:
		return fmt.Errorf("%w (node shutting down)", coordinator.ErrUnconfirmed)
	}
}

// Machine returns the node's state machine, for reads.
func (n *Node) Machine() *fsm.Machine { return n.machine }

// ID returns the node's server id.
func (n *Node) ID() string { return n.cfg.ID }

// RaftAddr returns the address peers dial to reach this node.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// IsLeader reports whether this node currently believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the id and Raft address of the leader this node knows of.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// AppliedIndex returns the index of the last entry the machine has applied
// (the machine's own count, not hashicorp/raft's, which runs ahead of it).
func (n *Node) AppliedIndex() uint64 { return n.machine.Index() }

// Snapshot takes a snapshot now (and truncates the log behind it).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// AddVoter adds a node to the cluster as a voter; only the leader can.
func (n *Node) AddVoter(id, addr string) error {
	return n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// AddNonvoter adds a node that receives the log but neither votes nor
// counts towards a commit (a learner); AddVoter on it later promotes it.
// Only the leader can.
func (n *Node) AddNonvoter(id, addr string) error {
	return n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 10*time.Second).Error()
}

// Suffrage reports whether id is in the cluster's configuration and, if
// so, whether it votes.
func (n *Node) Suffrage(id string) (member, voter bool, err error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return false, false, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return true, s.Suffrage == raft.Voter, nil
		}
	}
	return false, false, nil
}

// RemoveServer removes a node from the cluster; only the leader can.
func (n *Node) RemoveServer(id string) error {
	return n.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error()
}

// Servers returns the current cluster configuration: server id -> Raft
// address.
func (n *Node) Servers() (map[string]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range f.Configuration().Servers {
		out[string(s.ID)] = string(s.Address)
	}
	return out, nil
}

// shutdownWait bounds how long Close waits for hashicorp/raft to stop.
const shutdownWait = 15 * time.Second

// Close stops the node: Raft shuts down, the transport and the store close.
// It does not hand leadership over first; to the others it looks like a crash.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.wg.Wait()
		n.raft.DeregisterObserver(n.observer)
		// hashicorp/raft v1.7.3 can leave a replication goroutine blocked
		// forever in its pipeline (a follower's failed answer ends the
		// pipeline's reader while the sender waits for room in a full
		// window), and Shutdown then never returns. Give up after a while
		// rather than hang the process; the store stays open for the
		// goroutines left behind.
		done := make(chan error, 1)
		go func() { done <- n.raft.Shutdown().Error() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(shutdownWait):
			n.closeErr = fmt.Errorf("raftnode: raft did not shut down within %v (a replication goroutine is stuck)", shutdownWait)
			return
		}
		if c, ok := n.trans.(raft.WithClose); ok {
			err = errors.Join(err, c.Close())
		}
		n.closeErr = errors.Join(err, n.store.Close())
	})
	return n.closeErr
}
