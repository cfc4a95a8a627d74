// Command orders runs the orders service: the REST API (with requests
// routed to the instance that owns the customer), the outbox relay that
// publishes orders.created, the consumer of payment outcomes, and the
// instance's registration in the coordinator's membership.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/cursor"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/lifecycle"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/internal/platform"
	"github.com/payonce/payonce/internal/quota"
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
	keys, err := apikey.Parse(cfg.APIKeys)
	if err != nil {
		return fmt.Errorf("ORDERS_API_KEYS: %w", err)
	}
	cfg.Getenv, cfg.Stdout = getenv, stdout
	p, err := platform.Start(ctx, cfg.Config)
	if err != nil {
		return err
	}
	defer p.Close()

	seal := events.NewSealKey(cfg.InternalSecret)
	store := postgres.NewStore(p.Pool, p.Telemetry.Propagator)
	store.OnOutboxWrite = p.Relay.Nudge
	store.Cursors = cursor.NewCodec(events.DeriveKey(cfg.InternalSecret, "cursor"))
	store.Seal = seal
	svc := orders.NewService(store, orders.DemoCatalog, seal, p.Tracer, p.Logger)
	refusals, err := events.NewRefusals(p.Logger, p.Meter)
	if err != nil {
		return err
	}

	idem, err := idempotency.NewMiddleware(p.Idempotency, idempotency.Options{
		Scope:          apikey.Scope,
		ErrorWriter:    httpkit.ErrorEncoder,
		TracerProvider: p.Telemetry.TracerProvider,
		MeterProvider:  p.Telemetry.MeterProvider,
	})
	if err != nil {
		return err
	}
	parts := partition.Router{Owners: p.Members, Transport: p.PeerTransport, Logger: p.Logger, MaxBody: httpkit.DefaultMaxBodyBytes,
		Secret: events.DeriveKey(cfg.InternalSecret, "forwarding")}
	api := ordershttp.NewHandler(ordershttp.MakeEndpoints(svc, p.Endpoint), keys, idem, parts,
		quota.New(cfg.Quota, apikey.Caller), p.Logger)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	p.Logger.InfoContext(ctx, "orders listening", "addr", ln.Addr().String(), "advertise", cfg.AdvertiseURL)

	// With an identity, peers forward to (and hand over on) a listener of
	// their own: mutual TLS, orders instances only (docs/security.md).
	internalLn, internalOn, err := p.ListenInternal()
	if err != nil {
		ln.Close()
		return err
	}
	if internalOn {
		p.Logger.InfoContext(ctx, "orders internal listener (mutual TLS, orders peers only)", "addr", internalLn.Addr().String())
	}

	g := lifecycle.NewGroup(ctx)
	p.Go(g)
	g.Go("http", func(ctx context.Context) error {
		return httpkit.Serve(ctx, &http.Server{Handler: p.Handler(api)}, ln, cfg.ShutdownGrace)
	})
	if internalOn {
		g.Go("internal http", func(ctx context.Context) error {
			// A refused handshake (no certificate, another CA, another
			// service) is logged with the instance, not on stderr.
			srv := &http.Server{Handler: p.InternalHandler(api), ErrorLog: slog.NewLogLogger(p.Logger.Handler(), slog.LevelWarn)}
			return httpkit.Serve(ctx, srv, internalLn, cfg.ShutdownGrace)
		})
	}
	g.Go("payment outcome consumer", func(ctx context.Context) error {
		return p.Consumer("PAYMENTS", ordersnats.DurableName, ordersnats.Subjects...).
			Run(ctx, p.JetStream, ordersnats.OutcomeConsumer{Service: svc, Refusals: refusals}.Handle)
	})
	if cfg.PaymentsURL != "" {
		sweeper := &orders.Sweeper{
			Store:   store,
			Service: svc,
			Payments: ordershttp.PaymentsClient{BaseURL: cfg.PaymentsURL, APIKey: cfg.PaymentsAPIKey,
				Client: &http.Client{Timeout: 10 * time.Second, Transport: p.PeerTransport}},
			OlderThan: cfg.ReconcileAfter,
			Interval:  cfg.ReconcileInterval,
			Seal:      seal,
			Tracer:    p.Tracer,
			Meter:     p.Meter,
			Logger:    p.Logger,
		}
		g.Go("reconciliation sweeper", sweeper.Run)
	} else {
		p.Logger.WarnContext(ctx, "ORDERS_PAYMENTS_URL is not set: orders left pending by a lost event are not reconciled")
	}
	return g.Wait()
}
