// Command coordinator runs one node of the coordinator cluster: a Raft
// replica of the lock and membership state with its REST API. Configuration
// comes from environment variables (see config.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

	node, err := raftnode.Open(raftnode.Config{
		ID: cfg.NodeID, Bind: cfg.RaftBind, Advertise: cfg.RaftAdvertise, DataDir: cfg.DataDir, LogStore: cfg.LogStore, Peers: cfg.raftPeers(),
		HeartbeatTimeout: cfg.HeartbeatTimeout, ElectionTimeout: cfg.ElectionTimeout, LeaderLeaseTimeout: cfg.LeaderLeaseTimeout,
		TickInterval: cfg.TickInterval, SnapshotThreshold: uint64(cfg.SnapshotThreshold), HeartbeatFastPath: cfg.HeartbeatFastPath,
		LogOutput: stdout, LogLevel: cfg.RaftLogLevel, Metrics: raftnode.NewMetrics(tel.Registry),
	})
	if err != nil {
		return err
	}
	defer node.Close()

	handler := coordhttp.NewAPI(coordhttp.APIConfig{
		Service: raftnode.NewService(node), Cluster: node, Peers: cfg.httpPeers(),
		Tracer:         tel.Tracer("github.com/payonce/payonce/services/coordinator"),
		TracerProvider: tel.TracerProvider, Propagator: tel.Propagator, Metrics: tel.MetricsHandler(), Logger: logger,
	})
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
	}
	logger.Info("coordinator started", "http", ln.Addr().String(), "raft", cfg.RaftAdvertise, "peers", len(cfg.Peers))
	err = httpkit.Serve(ctx, &http.Server{Handler: handler}, ln, cfg.ShutdownGrace)
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}
