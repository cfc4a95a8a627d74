package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
)

// APIConfig is what a node's HTTP handler is built from.
type APIConfig struct {
	// Service serves locks and membership.
	Service coordinator.Service
	// Cluster is the Raft cluster (leadership, voters).
	Cluster Cluster
	// Peers maps each node's Raft id to its HTTP base URL, for forwarding.
	Peers map[string]string
	// Tracer makes the endpoint spans; nil disables them.
	Tracer trace.Tracer
	// TracerProvider, Propagator, Metrics and Logger are passed to
	// httpkit.Router.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	Metrics        http.Handler
	Logger         *slog.Logger
}

// NewAPI assembles a node's HTTP handler: the lock and membership API and
// the cluster admin routes, forwarded to the leader when they must be, inside
// httpkit's router (probes, /metrics, server spans, panic recovery).
func NewAPI(cfg APIConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	tracing := Tracing(cfg.Tracer)
	cluster := NewClusterHandler(cfg.Cluster, cfg.Peers, cfg.Logger, tracing)
	api := http.NewServeMux()
	api.Handle("/v1/cluster", cluster)
	api.Handle("/v1/cluster/", cluster)
	api.Handle("/", NewHandler(NewEndpoints(cfg.Service, tracing), cfg.Logger))
	return httpkit.Router(httpkit.RouterConfig{
		API: withNodeStatus(cfg.Cluster, NewForwarder(cfg.Cluster, cfg.Peers).Wrap(api)),
		Checks: []httpkit.Check{{Name: "raft-leader", Probe: func(context.Context) error {
			if id, _ := cfg.Cluster.Leader(); id == "" {
				return errors.New("no leader known")
			}
			return nil
		}}, {Name: "raft-voter", Probe: func(context.Context) error {
			if joining, inc := cfg.Cluster.Joining(); joining {
				return errors.New("joining: started with an empty data directory and no instruction to bootstrap; refusing to vote until the leader admits incarnation " + inc)
			}
			return nil
		}}},
		Metrics: cfg.Metrics, TracerProvider: cfg.TracerProvider, Propagator: cfg.Propagator, Logger: cfg.Logger,
	})
}
