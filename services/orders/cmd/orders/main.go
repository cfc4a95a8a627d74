// Command orders runs the orders service: the REST API (with requests
// routed to the instance that owns the customer), the outbox relay that
// publishes orders.created, the consumer of payment outcomes, and the
// instance's registration in the coordinator's membership.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/endpointkit"
	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/failpoint"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/lifecycle"
	"github.com/payonce/payonce/internal/membership"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/internal/pgtrace"
	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/orders"
	ordershttp "github.com/payonce/payonce/services/orders/http"
	ordersnats "github.com/payonce/payonce/services/orders/nats"
	"github.com/payonce/payonce/services/orders/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	// Test-only crash points; empty in every real deployment.
	failpoint.Enable(getenv("PAYONCE_FAILPOINTS"))
	keys, err := apikey.Parse(cfg.APIKeys)
	if err != nil {
		return fmt.Errorf("ORDERS_API_KEYS: %w", err)
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "orders", Getenv: getenv, LogOutput: stdout})
	if err != nil {
		return err
	}
	logger := tel.Logger.With("instance", cfg.InstanceID)
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(flushCtx)
	}()
	tracer := tel.Tracer("payonce/orders")

	// Storage.
	if cfg.MigrateOnStart {
		if _, err := migrations.Up(ctx, cfg.DatabaseURL, "orders"); err != nil {
			return err
		}
	}
	pool, err := pgtrace.NewPool(ctx, cfg.DatabaseURL, tel.TracerProvider, "orders")
	if err != nil {
		return fmt.Errorf("orders database: %w", err)
	}
	defer pool.Close()
	store := postgres.NewStore(pool, tel.Propagator)
	idemStore := idempotency.NewStore(pool, idempotency.Config{
		LockTimeout: cfg.IdempotencyLockTimeout,
		Retention:   cfg.IdempotencyRetention,
		Logger:      logger,
	})

	// Messaging.
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("orders "+cfg.InstanceID), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("nats %s: %w", cfg.NATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		return err
	}
	relay := outbox.NewRelay(outbox.Relay{
		Pool:       pool,
		Publisher:  eventbus.Publisher{JS: js, Tracer: tracer, Propagator: tel.Propagator},
		Propagator: tel.Propagator,
		Tracer:     tracer,
		Logger:     logger,
	})
	store.OnOutboxWrite = relay.Nudge

	// Partitioning.
	members := membership.New(membership.NewClient(cfg.CoordinatorURLs, nil), "orders",
		membership.Member{Instance: cfg.InstanceID, Addr: cfg.AdvertiseURL}, cfg.MembershipTTL, logger)
	parts := partition.Router{
		Owners:    members,
		Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tel.TracerProvider), otelhttp.WithPropagators(tel.Propagator)),
		Logger:    logger,
		MaxBody:   httpkit.DefaultMaxBodyBytes,
	}

	// Domain and transport.
	svc := orders.NewService(store, orders.DemoCatalog, tracer, logger)
	idem, err := idempotency.NewMiddleware(idemStore, idempotency.Options{
		Scope:          ordershttp.CallerScope,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
	})
	if err != nil {
		return err
	}
	meter := tel.Meter("payonce/orders")
	endpoints := ordershttp.MakeEndpoints(svc, func(name string) endpoint.Middleware {
		return endpointkit.Chain(name, tracer, meter, logger)
	})
	handler := httpkit.Router(httpkit.RouterConfig{
		API:      ordershttp.NewHandler(endpoints, keys, idem, parts, logger),
		Instance: cfg.InstanceID,
		Checks: []httpkit.Check{
			{Name: "postgres", Probe: store.Ping},
			{Name: "nats", Probe: func(context.Context) error {
				if !nc.IsConnected() {
					return fmt.Errorf("not connected (%s)", nc.Status())
				}
				return nil
			}},
			{Name: "ring", Probe: func(context.Context) error {
				select {
				case <-members.Ready():
					return nil
				default:
					return fmt.Errorf("not yet on the ring")
				}
			}},
		},
		Metrics:        tel.MetricsHandler(),
		TracerProvider: tel.TracerProvider,
		Propagator:     tel.Propagator,
		Logger:         logger,
	})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	logger.InfoContext(ctx, "orders listening", "addr", ln.Addr().String(), "advertise", cfg.AdvertiseURL)

	g := lifecycle.NewGroup(ctx)
	g.Go("http", func(ctx context.Context) error {
		return httpkit.Serve(ctx, &http.Server{Handler: handler}, ln, cfg.ShutdownGrace)
	})
	g.Go("membership", members.Run)
	g.Go("outbox relay", relay.Run)
	g.Go("payment outcome consumer", func(ctx context.Context) error {
		consumer := eventbus.Consumer{
			Stream:     "PAYMENTS",
			Durable:    ordersnats.DurableName,
			Subjects:   ordersnats.Subjects,
			Tracer:     tracer,
			Propagator: tel.Propagator,
			OnError: func(ctx context.Context, msg jetstream.Msg, err error) {
				logger.WarnContext(ctx, "payment outcome not applied; it will be redelivered", "subject", msg.Subject(), "err", err)
			},
		}
		return consumer.Run(ctx, js, ordersnats.OutcomeConsumer{Service: svc}.Handle)
	})
	g.Go("idempotency cleanup", func(ctx context.Context) error {
		_ = idemStore.RunCleanup(ctx, time.Hour)
		return nil
	})
	return g.Wait()
}
