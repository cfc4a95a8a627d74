// Command payments runs the payments service: the REST API, the consumer
// of orders.created (charging the customers this instance owns and handing
// the others to their owner), the outbox relay that publishes payment
// outcomes, the recovery worker and the idempotency-key cleanup.
package main

import (
	"context"
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

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/cursor"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/lifecycle"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/internal/platform"
	"github.com/payonce/payonce/internal/quota"
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
	keys, err := apikey.Parse(cfg.APIKeys)
	if err != nil {
		return fmt.Errorf("PAYMENTS_API_KEYS: %w", err)
	}
	peerCaller, ok := keys.CallerOf(cfg.PeerAPIKey)
	if !ok {
		return fmt.Errorf("PAYMENTS_PEER_API_KEY is not one of PAYMENTS_API_KEYS")
	}
	cfg.Getenv, cfg.Stdout = getenv, stdout
	// The hand-overs are for peers only: with an internal listener the
	// public port answers them 404. (Orders' reconciliation read,
	// OrderPaymentPath, is another service's call and stays public.)
	cfg.PeerPaths = []string{paymentshttp.PayOrderPath, paymentshttp.RefundOrderPath}
	p, err := platform.Start(ctx, cfg.Config)
	if err != nil {
		return err
	}
	defer p.Close()

	// Domain.
	store := postgres.NewStore(p.Pool, p.Telemetry.Propagator)
	store.OnOutboxWrite = p.Relay.Nudge
	if err := postgres.RegisterMetrics(p.Meter, p.Pool); err != nil {
		return err
	}
	if err := postgres.RegisterFenceRefusalMetrics(p.Meter); err != nil { // for the console (#16)
		return err
	}
	store.Cursors = cursor.NewCodec(events.DeriveKey(cfg.InternalSecret, "cursor"))
	// One design per database: instances of both would fence a charge
	// through different rows (ADR 0070), so a mismatch refuses to start.
	if err := store.PinOwnershipDesign(ctx, cfg.Ownership, cfg.InstanceID); err != nil {
		return err
	}
	locks := lock.NewClient(cfg.CoordinatorURLs, lock.WithOwner("payments/"+cfg.InstanceID), lock.WithTracerProvider(p.Telemetry.TracerProvider),
		lock.WithHTTPClient(p.Coordinator)) // identity: the coordinator knows this instance by its certificate
	bankOpts := []paymentsbank.Option{paymentsbank.WithLogger(p.Logger), paymentsbank.WithMeter(p.Meter)}
	if cfg.TLS != nil {
		// The bank knows this instance by its certificate (it admits
		// payments only), and this instance accepts only the bank.
		bankHTTP, err := identity.HTTPClient(*cfg.TLS, 0, identity.Bank)
		if err != nil {
			return fmt.Errorf("bank tls: %w", err)
		}
		bankOpts = append(bankOpts, paymentsbank.WithTransport(bankHTTP.Transport))
	}
	bank := paymentsbank.NewClient(cfg.BankURL, cfg.BankTimeout, p.Telemetry.TracerProvider, bankOpts...)
	// The ownership design (ADR 0070): a lease per ring partition, or a
	// coordinator lock per charge.
	var locker payments.Locker = coordinator.Locker{Client: locks, Wait: cfg.LockWait}
	var parts *coordinator.Partitions
	var routing *paymentshttp.Routing
	var readiness []httpkit.Check
	if cfg.Ownership == "partition" {
		leases, err := locks.PartitionLeases(cfg.PartitionTTL)
		if err != nil {
			return fmt.Errorf("PAYMENTS_PARTITION_TTL: %w", err)
		}
		onRing := func() bool {
			select {
			case <-p.Members.Ready():
				return true
			default:
				return false
			}
		}
		owns := func(name string) bool {
			// Before this instance is on the ring, Owns would say yes to
			// everything (an empty ring): claim nothing until then.
			return onRing() && p.Members.Owns(name)
		}
		parts = &coordinator.Partitions{Leases: leases, Owns: owns, OnRing: onRing, RingChanged: p.Members.Changed,
			Claim: store.ClaimPartition, Drain: cfg.PartitionDrain, Logger: p.Logger}
		locker = parts
		routing = &paymentshttp.Routing{
			Router: partition.Router{Owners: p.Members, Transport: p.PeerTransport, Logger: p.Logger, MaxBody: httpkit.DefaultMaxBodyBytes,
				Secret: events.DeriveKey(cfg.InternalSecret, "forwarding")},
			PaymentCustomer: func(ctx context.Context, caller, id string) (string, bool) {
				pay, err := store.CallerPayment(ctx, caller, id)
				return pay.CustomerID, err == nil
			},
		}
		readiness = append(readiness, httpkit.Check{Name: "partitions", Probe: func(context.Context) error {
			if !parts.Ready() {
				return errors.New("not yet serving every partition the ring gives this instance")
			}
			return nil
		}})
	}
	svc := payments.NewService(store, locker, bank,
		payments.Config{LockTTL: cfg.LockTTL, Seal: events.NewSealKey(cfg.InternalSecret)}, p.Tracer, p.Logger)
	refusals, err := events.NewRefusals(p.Logger, p.Meter)
	if err != nil {
		return err
	}

	// Transport. The consumer charges the customers this instance owns and
	// hands the others to their owner on an internal route.
	owners := paymentshttp.OwnerRouter{
		Members: p.Members,
		Client:  &http.Client{Timeout: cfg.LockWait + cfg.BankTimeout + 5*time.Second, Transport: p.PeerTransport},
		APIKey:  cfg.PeerAPIKey,
		// Under the partition design a customer's owner is its
		// partition's: the instance holding that partition's lease.
		ByPartition: parts != nil,
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
	internal := apikey.Only(peerCaller, paymentshttp.InternalRoutes(
		paymentshttp.PayOrderHandler(paymentshttp.MakePayOrderEndpoint(svc, p.Endpoint("pay_order")), httpkit.ServerOptions(p.Logger)...),
		paymentshttp.RefundOrderHandler(paymentshttp.MakeRefundOrderEndpoint(svc, p.Endpoint("refund_order")), httpkit.ServerOptions(p.Logger)...)))
	api := paymentshttp.NewHandler(paymentshttp.MakeEndpoints(svc, p.Endpoint), keys, idem, internal,
		quota.New(cfg.Quota, apikey.Caller), routing, p.Logger)
	// The orders reconciliation sweeper's read of an order's payment.
	routes := paymentshttp.OrderPaymentRoutes(payments.OrderPayments{Store: store}, keys, api, httpkit.ServerOptions(p.Logger)...)
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	p.Logger.InfoContext(ctx, "payments listening", "addr", ln.Addr().String(), "advertise", cfg.AdvertiseURL)

	// With an identity, peers forward to (and hand over on) a listener of
	// their own: mutual TLS, payments instances only (docs/security.md).
	internalLn, internalOn, err := p.ListenInternal()
	if err != nil {
		ln.Close()
		return err
	}
	if internalOn {
		p.Logger.InfoContext(ctx, "payments internal listener (mutual TLS, payments peers only)", "addr", internalLn.Addr().String())
	}

	g := lifecycle.NewGroup(ctx)
	p.Go(g)
	g.Go("http", func(ctx context.Context) error {
		return httpkit.Serve(ctx, &http.Server{Handler: p.Handler(routes, readiness...)}, ln, cfg.ShutdownGrace)
	})
	if internalOn {
		g.Go("internal http", func(ctx context.Context) error {
			// A refused handshake (no certificate, another CA, another
			// service) is logged with the instance, not on stderr.
			srv := &http.Server{Handler: p.InternalHandler(routes), ErrorLog: slog.NewLogLogger(p.Logger.Handler(), slog.LevelWarn)}
			return httpkit.Serve(ctx, srv, internalLn, cfg.ShutdownGrace)
		})
	}
	if parts != nil {
		g.Go("partition leases", func(ctx context.Context) error { return parts.Leases.Run(ctx) })
		g.Go("partition handoff", func(ctx context.Context) error { return parts.Run(ctx, 100*time.Millisecond) })
	}
	g.Go("orders.created consumer", func(ctx context.Context) error {
		return p.Consumer("ORDERS", paymentsnats.DurableName, "orders.created").
			Run(ctx, p.JetStream, paymentsnats.OrderConsumer{Service: svc, Owner: owners, Refusals: refusals}.Handle)
	})
	g.Go("orders.refund_requested consumer", func(ctx context.Context) error {
		return p.Consumer("ORDERS", paymentsnats.RefundDurableName, events.OrderRefundRequested).
			Run(ctx, p.JetStream, paymentsnats.RefundConsumer{Service: svc, Owner: owners, Refusals: refusals}.Handle)
	})
	g.Go("recovery worker", func(ctx context.Context) error {
		recovery := &payments.Recovery{Service: svc, Store: store, Interval: cfg.RecoveryInterval, OlderThan: cfg.RecoveryAfter,
			Tracer: p.Tracer, Meter: p.Meter, Logger: p.Logger}
		return recovery.Run(ctx)
	})
	return g.Wait()
}
