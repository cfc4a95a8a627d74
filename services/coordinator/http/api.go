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
	// Policy is what an authenticated caller may do (coordinator.Policy);
	// with TLS on, coordinator.DefaultPolicy. The zero Policy checks
	// nothing for requests that carry no identity.
	Policy coordinator.Policy
	// PeerTransport carries forwarded requests to the leader; with TLS on it
	// presents this node's certificate, since the leader checks it before
	// believing the caller the node vouches for. Nil: http.DefaultTransport.
	PeerTransport http.RoundTripper
	// PeerClient asks another node about itself (GET /v1/cluster/self) when
	// POST /v1/cluster/voters admits the node it adds; with TLS on it must
	// present this node's certificate and trust the stack's CA, as the
	// background Admitter's client does. Nil: a plain client, 2 s timeout.
	PeerClient *http.Client
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
	cluster := NewClusterHandler(cfg.Cluster, cfg.Peers, cfg.PeerClient, cfg.Logger, cfg.Policy, tracing)
	api := http.NewServeMux()
	api.Handle("/v1/cluster", cluster)
	api.Handle("/v1/cluster/", cluster)
	// What an identity may do is decided by coordinator.Authorize and, for
	// what it holds, by the log.
	api.Handle("/", NewHandler(NewEndpoints(coordinator.Authorize(cfg.Service, cfg.Policy), tracing), cfg.Logger))
	fwd := NewForwarder(cfg.Cluster, cfg.Peers)
	fwd.Transport = cfg.PeerTransport
	return httpkit.Router(httpkit.RouterConfig{
		// withCaller first: the node status route, the forwarder and the
		// handlers all read the caller it puts in the context.
		// An unauthenticated request is refused by the node it reaches,
		// before its body is read or it is forwarded.
		API: withCaller(guard(cfg.Policy.Authenticated, withNodeStatus(cfg.Cluster, cfg.Policy, fwd.Wrap(api)))),
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
