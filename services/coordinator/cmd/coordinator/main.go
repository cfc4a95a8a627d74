// Command coordinator runs one node of the coordinator cluster: a Raft
// replica of the lock and membership state with its REST API. Configuration
// comes from environment variables (see config.go).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/telemetry"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", err)
		os.Exit(1)
	}
}

// run starts the node and serves until ctx ends. All wiring is here.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "coordinator", InstanceID: cfg.NodeID, Getenv: getenv, LogOutput: stdout})
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	logger := tel.Logger.With("node", cfg.NodeID)

	sec, err := newSecurity(cfg)
	if err != nil {
		return err
	}
	bootstrap, err := mayBootstrap(ctx, cfg, sec.askPeer, logger)
	if err != nil {
		return err
	}
	node, err := raftnode.Open(raftnode.Config{
		ID: cfg.NodeID, Bind: cfg.RaftBind, Advertise: cfg.RaftAdvertise, DataDir: cfg.DataDir, LogStore: cfg.LogStore,
		Peers: []raftnode.Peer{{ID: cfg.NodeID, Addr: cfg.RaftAdvertise}}, Bootstrap: bootstrap, Epoch: cfg.Epoch,
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout, LeaderLeaseTimeout: cfg.LeaderLeaseTimeout,
		TickInterval: cfg.TickInterval, SnapshotThreshold: uint64(cfg.SnapshotThreshold), HeartbeatFastPath: cfg.HeartbeatFastPath,
		LogOutput: stdout, LogLevel: cfg.RaftLogLevel, Metrics: raftnode.NewMetrics(tel.Registry), TLS: sec.raft,
	})
	if err != nil {
		return err
	}
	defer node.Close()
	if joining, inc := node.Joining(); joining {
		logger.Warn("no Raft state and not told to bootstrap: joining, refusing to vote until the leader admits this node (see docs/raft.md, lost disk)", "incarnation", inc)
	}
	admitCtx, stopAdmitter := context.WithCancel(ctx)
	defer stopAdmitter()
	go (&coordhttp.Admitter{Cluster: node, Peers: cfg.httpPeers(), Client: sec.askPeer, Logger: logger}).Run(admitCtx)

	handler := coordhttp.NewAPI(coordhttp.APIConfig{
		Service: raftnode.NewService(node), Cluster: node, Peers: cfg.httpPeers(),
		Policy: cfg.Policy, PeerTransport: sec.forward.Transport, PeerClient: sec.askPeer,
		Tracer:         tel.Tracer("github.com/payonce/payonce/services/coordinator"),
		TracerProvider: tel.TracerProvider, Propagator: tel.Propagator, Metrics: tel.MetricsHandler(), Logger: logger,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	if sec.api != nil {
		ln = tls.NewListener(ln, sec.api)
	}
	logger.Info("coordinator started", "http", ln.Addr().String(), "raft", cfg.RaftAdvertise, "peers", len(cfg.Peers), "tls", cfg.TLS != nil)
	err = httpkit.Serve(ctx, &http.Server{Handler: handler}, ln, cfg.ShutdownGrace)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// mayBootstrap decides whether this node creates a new cluster: only when
// told to (COORDINATOR_BOOTSTRAP), only with an empty data dir, and only if
// every peer answers that it is not a member of a cluster either. An empty
// data dir may be a lost disk while the others carry on; bootstrapping then
// would start a second, one-node cluster granting the same locks. Peers
// that do not answer yet are asked again until ctx ends.
func mayBootstrap(ctx context.Context, cfg config, client *http.Client, logger *slog.Logger) (bool, error) {
	if !cfg.Bootstrap || raftnode.HasState(cfg.DataDir) {
		return false, nil
	}
	for _, p := range cfg.Peers {
		if p.ID == cfg.NodeID {
			continue
		}
		for {
			self, err := peerSelf(ctx, client, p.HTTPURL)
			if err == nil {
				if !self.Joining {
					logger.Warn("told to bootstrap, but a peer is already a cluster member: joining instead", "peer", p.ID, "leader", self.LeaderID)
					return false, nil
				}
				break
			}
			logger.Info("bootstrap: waiting for peer to answer", "peer", p.ID, "error", err)
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(time.Second): // peers start in any order
			}
		}
	}
	logger.Info("bootstrapping a new cluster", "peers", len(cfg.Peers))
	return true, nil
}

func peerSelf(ctx context.Context, client *http.Client, base string) (coordhttp.Self, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+coordhttp.SelfPath, nil)
	if err != nil {
		return coordhttp.Self{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return coordhttp.Self{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return coordhttp.Self{}, fmt.Errorf("%s", resp.Status)
	}
	var s coordhttp.Self
	return s, json.NewDecoder(resp.Body).Decode(&s)
}
