// Command payments runs the payments service: the REST API, the consumer
// of orders.created, the outbox relay that publishes payment outcomes, the
// recovery worker and the idempotency-key cleanup, in one process.
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
	"github.com/payonce/payonce/internal/pgtrace"
	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/payments"
	paymentsbank "github.com/payonce/payonce/services/payments/bank"
	"github.com/payonce/payonce/services/payments/coordinator"
	paymentshttp "github.com/payonce/payonce/services/payments/http"
	paymentsnats "github.com/payonce/payonce/services/payments/nats"
	"github.com/payonce/payonce/services/payments/postgres"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payments:", err)
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
		return fmt.Errorf("PAYMENTS_API_KEYS: %w", err)
	}
	peerCaller, ok := keys.CallerOf(cfg.PeerAPIKey)
	if !ok {
		return fmt.Errorf("PAYMENTS_PEER_API_KEY is not one of PAYMENTS_API_KEYS")
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "payments", Getenv: getenv, LogOutput: stdout})
	if err != nil {
		return err
	}
	logger := tel.Logger.With("instance", cfg.InstanceID)
	defer func() {
		flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(flushCtx)
	}()
	tracer := tel.Tracer("payonce/payments")

	// Storage.
	if cfg.MigrateOnStart {
		if _, err := migrations.Up(ctx, cfg.DatabaseURL, "payments"); err != nil {
			return err
		}
	}
	pool, err := pgtrace.NewPool(ctx, cfg.DatabaseURL, tel.TracerProvider, "payments")
	if err != nil {
		return fmt.Errorf("payments database: %w", err)
	}
	defer pool.Close()
	store := postgres.NewStore(pool, tel.Propagator)
	idemStore := idempotency.NewStore(pool, idempotency.Config{
		LockTimeout: cfg.IdempotencyLockTimeout,
		Retention:   cfg.IdempotencyRetention,
		Logger:      logger,
	})

	// Messaging.
	nc, err := nats.Connect(cfg.NATSURL, nats.Name("payments "+cfg.InstanceID), nats.MaxReconnects(-1))
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

	// Domain.
	locks := lock.NewClient(cfg.CoordinatorURLs, lock.WithOwner("payments/"+cfg.InstanceID), lock.WithTracerProvider(tel.TracerProvider))
	bank := paymentsbank.NewClient(cfg.BankURL, cfg.BankTimeout, tel.TracerProvider)
	svc := payments.NewService(store, coordinator.Locker{Client: locks, Wait: cfg.LockWait}, bank,
		payments.Config{LockTTL: cfg.LockTTL}, tracer, logger)

	// Partitioning: the consumer charges the customers this instance owns
	// and hands the others to their owner.
	members := membership.New(membership.NewClient(cfg.CoordinatorURLs, nil), "payments",
		membership.Member{Instance: cfg.InstanceID, Addr: cfg.AdvertiseURL}, cfg.MembershipTTL, logger)
	peerClient := &http.Client{
		Timeout:   cfg.LockWait + cfg.BankTimeout + 5*time.Second,
		Transport: otelhttp.NewTransport(http.DefaultTransport, otelhttp.WithTracerProvider(tel.TracerProvider), otelhttp.WithPropagators(tel.Propagator)),
	}
	owners := paymentshttp.OwnerRouter{Members: members, Client: peerClient, APIKey: cfg.PeerAPIKey}

	// Transport.
	idem, err := idempotency.NewMiddleware(idemStore, idempotency.Options{
		Scope:          paymentshttp.CallerScope,
		TracerProvider: tel.TracerProvider,
		MeterProvider:  tel.MeterProvider,
	})
	if err != nil {
		return err
	}
	meter := tel.Meter("payonce/payments")
	endpoints := paymentshttp.MakeEndpoints(svc, func(name string) endpoint.Middleware {
		return endpointkit.Chain(name, tracer, meter, logger)
	})
	internal := apikey.Only(peerCaller, paymentshttp.PayOrderHandler(
		paymentshttp.MakePayOrderEndpoint(svc, endpointkit.Chain("pay_order", tracer, meter, logger)), httpkit.ServerOptions(logger)...))
	handler := httpkit.Router(httpkit.RouterConfig{
		API:      paymentshttp.NewHandler(endpoints, keys, idem, internal, logger),
		Instance: cfg.InstanceID,
		Checks: []httpkit.Check{
			{Name: "postgres", Probe: store.Ping},
			{Name: "ring", Probe: func(context.Context) error {
				select {
				case <-members.Ready():
					return nil
				default:
					return fmt.Errorf("not yet on the ring")
				}
			}},
			{Name: "nats", Probe: func(context.Context) error {
				if !nc.IsConnected() {
					return fmt.Errorf("not connected (%s)", nc.Status())
				}
				return nil
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
	logger.InfoContext(ctx, "payments listening", "addr", ln.Addr().String())

	g := lifecycle.NewGroup(ctx)
	g.Go("http", func(ctx context.Context) error {
		return httpkit.Serve(ctx, &http.Server{Handler: handler}, ln, cfg.ShutdownGrace)
	})
	g.Go("outbox relay", relay.Run)
	g.Go("orders.created consumer", func(ctx context.Context) error {
		consumer := eventbus.Consumer{
			Stream:     "ORDERS",
			Durable:    paymentsnats.DurableName,
			Subjects:   []string{"orders.created"},
			Tracer:     tracer,
			Propagator: tel.Propagator,
			OnError: func(ctx context.Context, msg jetstream.Msg, err error) {
				logger.WarnContext(ctx, "orders.created not handled; it will be redelivered", "subject", msg.Subject(), "err", err)
			},
		}
		return consumer.Run(ctx, js, paymentsnats.OrderConsumer{Service: svc, Owner: owners}.Handle)
	})
	g.Go("membership", members.Run)
	g.Go("recovery worker", func(ctx context.Context) error {
		return payments.RunRecovery(ctx, svc, cfg.RecoveryInterval, cfg.RecoveryAfter, logger)
	})
	g.Go("idempotency cleanup", func(ctx context.Context) error {
		_ = idemStore.RunCleanup(ctx, time.Hour)
		return nil
	})
	return g.Wait()
}
