// Package platform starts what every payonce service process stands on, in
// the order it is needed: telemetry, the service's database (migrated, with
// traced queries), NATS JetStream with payonce's streams, the outbox relay,
// the idempotency-key store, and the instance's registration on its
// service's ring. A service's run function adds only its own domain and
// transport on top, so the wiring that must be the same everywhere is
// written once.
package platform

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/endpointkit"
	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/failpoint"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/lifecycle"
	"github.com/payonce/payonce/internal/membership"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/internal/pgtrace"
	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
)

// Config is what a service tells the platform about itself.
type Config struct {
	// Service names the service ("orders"): its telemetry, its database's
	// migrations and its group on the ring.
	Service    string
	InstanceID string
	// AdvertiseURL is where other instances reach this one: the internal
	// listener when there is one.
	AdvertiseURL string
	// InternalAddr, with TLS, is the mutual-TLS listener other instances
	// of the service call (ListenInternal); empty: peers use the public one.
	InternalAddr string
	// PeerPaths are the routes only other instances of the service call
	// (payments' hand-overs): with an internal listener, the public one
	// answers them 404 (partition.Edge).
	PeerPaths   []string
	DatabaseURL string
	// DatabaseMaxConns caps the service's connection pool.
	DatabaseMaxConns int32
	MigrateOnStart   bool
	NATSURL          string
	CoordinatorURLs  []string
	MembershipTTL    time.Duration
	Idempotency      idempotency.Config
	// DevMode accepts demo API keys and the default internal secret
	// (PAYONCE_DEV_MODE): a laptop stack, never a deployment.
	DevMode bool
	// TLS is this instance's identity; nil leaves internal connections
	// plain (the tests of code that is not about identity).
	TLS *identity.Files
	// NATSTLS uses TLS with NATS (NATS_TLS); set by ReadConfig with TLS.
	NATSTLS bool
	// Getenv reads OTEL_*, LOG_* and PAYONCE_FAILPOINTS; Stdout receives logs.
	Getenv func(string) string
	Stdout io.Writer
}

// Platform is a started service process's shared machinery.
type Platform struct {
	Telemetry   *telemetry.Telemetry
	Logger      *slog.Logger
	Tracer      trace.Tracer
	Meter       metric.Meter
	Pool        *pgxpool.Pool
	NATS        *nats.Conn
	JetStream   jetstream.JetStream
	Relay       *outbox.Relay
	Idempotency *idempotency.Store
	Members     *membership.Membership
	// PeerTransport carries trace context on calls to other instances.
	// With an internal listener it presents this instance's certificate
	// and accepts a peer only by CA chain and an identity of this service
	// (identity.PeerTransport): peers are dialled at the address they
	// registered, which their certificates need not name.
	PeerTransport http.RoundTripper
	// Coordinator is the HTTP client for the coordinator: with the
	// instance's identity it presents its certificate (the coordinator
	// lets an instance change only its own leases and member entry) and
	// accepts only coordinator nodes. Its Timeout is zero, as pkg/lock
	// wants (lock.WithHTTPClient); callers set their own deadlines.
	Coordinator *http.Client

	cfg     Config
	closers []func()
}

// Start brings the platform up. On failure it releases what it opened.
func Start(ctx context.Context, cfg Config) (_ *Platform, err error) {
	// Test-only crash points; empty in every real deployment.
	failpoint.Enable(cfg.Getenv("PAYONCE_FAILPOINTS"))
	p := &Platform{cfg: cfg}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()

	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: cfg.Service, InstanceID: cfg.InstanceID, Getenv: cfg.Getenv, LogOutput: cfg.Stdout})
	if err != nil {
		return nil, err
	}
	p.Telemetry = tel
	p.closers = append(p.closers, func() {
		// Flush the last spans with a fresh, bounded context: the process's
		// own context is already cancelled when this runs.
		flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(flushCtx)
	})
	p.Logger = tel.Logger.With("instance", cfg.InstanceID)
	p.Tracer = tel.Tracer("payonce/" + cfg.Service)
	p.Meter = tel.Meter("payonce/" + cfg.Service)
	var peerBase http.RoundTripper = http.DefaultTransport
	if cfg.TLS != nil && cfg.InternalAddr != "" {
		if peerBase, err = identity.PeerTransport(*cfg.TLS, cfg.Service); err != nil {
			return nil, fmt.Errorf("peer tls: %w", err)
		}
	}
	p.PeerTransport = otelhttp.NewTransport(peerBase,
		otelhttp.WithTracerProvider(tel.TracerProvider), otelhttp.WithPropagators(tel.Propagator))

	if cfg.MigrateOnStart {
		if _, err := migrations.Up(ctx, cfg.DatabaseURL, cfg.Service); err != nil {
			return nil, err
		}
	}
	if p.Pool, err = pgtrace.NewPool(ctx, cfg.DatabaseURL, tel.TracerProvider, cfg.Service, cfg.DatabaseMaxConns); err != nil {
		return nil, fmt.Errorf("%s database: %w", cfg.Service, err)
	}
	p.closers = append(p.closers, p.Pool.Close)
	cfg.Idempotency.Logger = p.Logger
	p.Idempotency = idempotency.NewStore(p.Pool, cfg.Idempotency)

	if p.NATS, err = connectNATS(cfg); err != nil {
		return nil, err
	}
	p.closers = append(p.closers, p.NATS.Close)
	if p.JetStream, err = jetstream.New(p.NATS); err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if err := eventbus.EnsureStreamsAs(ctx, p.JetStream, cfg.Service); err != nil {
		return nil, err
	}
	if err := outbox.RegisterMetrics(p.Meter, p.Pool); err != nil {
		return nil, err
	}
	p.Relay = outbox.NewRelay(outbox.Relay{
		Pool:       p.Pool,
		Publisher:  p.Publisher(),
		Propagator: tel.Propagator,
		Tracer:     p.Tracer,
		Logger:     p.Logger,
	})
	p.Coordinator = &http.Client{}
	if cfg.TLS != nil {
		if p.Coordinator, err = identity.HTTPClient(*cfg.TLS, 0, identity.Coordinator); err != nil {
			return nil, fmt.Errorf("coordinator tls: %w", err)
		}
	}
	// The membership client's own timeout, over the coordinator client's
	// transport: a long poll lasts at most 30 s.
	memberClient := &http.Client{Transport: p.Coordinator.Transport, Timeout: 40 * time.Second}
	p.Members = membership.New(membership.NewClient(cfg.CoordinatorURLs, memberClient), cfg.Service,
		membership.Member{Instance: cfg.InstanceID, Addr: cfg.AdvertiseURL}, cfg.MembershipTTL, p.Logger)
	return p, nil
}

// Close releases everything Start opened, newest first.
func (p *Platform) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
	p.closers = nil
}

// Publisher publishes events with this process's tracer.
func (p *Platform) Publisher() eventbus.Publisher {
	return eventbus.Publisher{JS: p.JetStream, Tracer: p.Tracer, Propagator: p.Telemetry.Propagator}
}

// Consumer describes a durable consumer traced like every other.
func (p *Platform) Consumer(stream, durable string, subjects ...string) eventbus.Consumer {
	return eventbus.Consumer{
		Stream:     stream,
		Durable:    durable,
		Subjects:   subjects,
		Tracer:     p.Tracer,
		Propagator: p.Telemetry.Propagator,
		Meter:      p.Meter,
		OnError: func(ctx context.Context, msg jetstream.Msg, err error) {
			p.Logger.WarnContext(ctx, "message not handled; it will be redelivered", "subject", msg.Subject(), "err", err)
		},
	}
}

// Endpoint returns the standard go-kit middleware chain for endpoint name.
func (p *Platform) Endpoint(name string) endpoint.Middleware {
	return endpointkit.Chain(name, p.Tracer, p.Meter, p.Logger)
}

// Handler wraps a service's API in the shared router: probes (Postgres,
// NATS, ring, and the service's own extra checks), /metrics, tracing, the
// instance header. With an internal listener, the public API refuses the
// peer-only routes (Config.PeerPaths) and forwarded claims
// (partition.Edge): peers use InternalHandler's listener.
func (p *Platform) Handler(api http.Handler, extra ...httpkit.Check) http.Handler {
	if p.cfg.InternalAddr != "" {
		api = partition.Edge(api, p.cfg.PeerPaths...)
	}
	return httpkit.Router(httpkit.RouterConfig{
		API:      api,
		Instance: p.cfg.InstanceID,
		Checks: append([]httpkit.Check{
			{Name: "postgres", Probe: p.Pool.Ping},
			{Name: "nats", Probe: func(context.Context) error {
				if !p.NATS.IsConnected() {
					return fmt.Errorf("not connected (%s)", p.NATS.Status())
				}
				return nil
			}},
			{Name: "ring", Probe: func(context.Context) error {
				select {
				case <-p.Members.Ready():
					return nil
				default:
					return errors.New("not yet on the ring")
				}
			}},
		}, extra...),
		Metrics:        p.Telemetry.MetricsHandler(),
		TracerProvider: p.Telemetry.TracerProvider,
		Propagator:     p.Telemetry.Propagator,
		Logger:         p.Logger,
	})
}

// ListenInternal opens the internal listener (Config.InternalAddr): mutual
// TLS with this instance's certificate, admitting instances of its own
// service only, so a process without such a certificate (an API caller,
// another service, another CA's party) fails the handshake before a byte
// of a request is read. ok is false when no internal listener is
// configured.
func (p *Platform) ListenInternal() (ln net.Listener, ok bool, err error) {
	if p.cfg.InternalAddr == "" || p.cfg.TLS == nil {
		return nil, false, nil
	}
	tlsCfg, err := identity.ServerConfig(*p.cfg.TLS, identity.AllowServices(p.cfg.Service))
	if err != nil {
		return nil, false, fmt.Errorf("internal listener tls: %w", err)
	}
	raw, err := net.Listen("tcp", p.cfg.InternalAddr)
	if err != nil {
		return nil, false, fmt.Errorf("listen %s: %w", p.cfg.InternalAddr, err)
	}
	return tls.NewListener(raw, tlsCfg), true, nil
}

// InternalHandler wraps api for the internal listener: traced like the
// public one (a forwarded request stays one trace), with no probes or
// metrics, serving only peers' forwarded requests and internal routes
// (partition.PeersOnly).
func (p *Platform) InternalHandler(api http.Handler) http.Handler {
	return httpkit.Router(httpkit.RouterConfig{
		API:            partition.PeersOnly(p.cfg.Service, api),
		Instance:       p.cfg.InstanceID,
		TracerProvider: p.Telemetry.TracerProvider,
		Propagator:     p.Telemetry.Propagator,
		Logger:         p.Logger,
	})
}

// Go starts the platform's own background parts in g: membership, the
// outbox relay and the idempotency-key cleanup.
func (p *Platform) Go(g *lifecycle.Group) {
	g.Go("membership", p.Members.Run)
	g.Go("outbox relay", p.Relay.Run)
	g.Go("idempotency cleanup", func(ctx context.Context) error {
		_ = p.Idempotency.RunCleanup(ctx, time.Hour)
		return nil
	})
}
