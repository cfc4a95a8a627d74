// Command bank runs the SIMULATED payment provider that payments charges.
// It is the one simulated part of payonce; see package bank.
package main

import (
	"context"
	"crypto/tls"
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

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/lifecycle"
	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/services/bank"
	bankhttp "github.com/payonce/payonce/services/bank/http"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bank:", err)
		os.Exit(1)
	}
}

// config is everything the bank reads from its environment.
type config struct {
	Addr string // BANK_ADDR, default :8099
	// AdminAddr (BANK_ADMIN_ADDR, default empty: everything on Addr) moves
	// the admin routes (/admin/faults) and /metrics to a listener of their
	// own, which a deployment exposes to operators only.
	AdminAddr string
	Faults    bank.Faults // BANK_LATENCY_MS, BANK_ERROR_RATE, BANK_LOSE_RESPONSE_RATE, BANK_DECLINE_CARDS
	Seed      int         // BANK_SEED, default 1: makes random faults reproducible
	// TLS (TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE; default none: plain
	// HTTP, for a laptop) is the bank's identity. With it the payment API
	// on Addr is mutual TLS and answers payments instances only: a caller
	// without a payments certificate from the CA fails the handshake, so
	// card numbers cross the network encrypted and only payonce's payments
	// service can charge. The simulator's controls (faults, ledger,
	// metrics, probes) then need AdminAddr.
	TLS *identity.Files
}

// errTLSNeedsAdmin refuses a TLS bank without its operator listener.
var errTLSNeedsAdmin = errors.New("TLS_* set: BANK_ADMIN_ADDR is required (the payment API admits payments instances only; the fault switches, the ledger, /metrics and the probes are served there)")

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	cfg := config{
		Addr:      env.String("BANK_ADDR", ":8099"),
		AdminAddr: env.String("BANK_ADMIN_ADDR", ""),
		Faults: bank.Faults{
			LatencyMS:    int64(env.Int("BANK_LATENCY_MS", 0)),
			DeclineCards: env.List("BANK_DECLINE_CARDS", []string{"4000000000000002"}),
		},
		Seed: env.Int("BANK_SEED", 1),
	}
	var err error
	if cfg.Faults.ErrorRate, err = parseRate(env.String("BANK_ERROR_RATE", "0")); err != nil {
		return cfg, fmt.Errorf("BANK_ERROR_RATE: %w", err)
	}
	if cfg.Faults.LoseResponseRate, err = parseRate(env.String("BANK_LOSE_RESPONSE_RATE", "0")); err != nil {
		return cfg, fmt.Errorf("BANK_LOSE_RESPONSE_RATE: %w", err)
	}
	files, tlsOn, err := identity.FilesFromEnv(func(k string) string { return env.String(k, "") })
	if err != nil {
		return cfg, err
	}
	if tlsOn {
		cfg.TLS = &files
		if cfg.AdminAddr == "" {
			return cfg, errTLSNeedsAdmin
		}
	}
	if err := env.Err(); err != nil {
		return cfg, err
	}
	return cfg, cfg.Faults.Validate()
}

func parseRate(s string) (float64, error) {
	var f float64
	if _, err := fmt.Sscanf(s, "%g", &f); err != nil {
		return 0, fmt.Errorf("%q is not a number between 0 and 1", s)
	}
	return f, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "bank", Getenv: getenv, LogOutput: stdout})
	if err != nil {
		return err
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(shutdownCtx)
	}()

	sim := bank.NewSimulator(cfg.Faults, uint64(cfg.Seed))
	router := func(api http.Handler, metrics bool) http.Handler {
		rc := httpkit.RouterConfig{
			API:            api,
			TracerProvider: tel.TracerProvider,
			Propagator:     tel.Propagator,
			Logger:         tel.Logger,
		}
		if metrics {
			rc.Metrics = tel.MetricsHandler()
		}
		return httpkit.Router(rc)
	}
	api := bankhttp.NewHandler(sim, tel.Logger)
	if cfg.AdminAddr == "" {
		return serveBank(ctx, tel, "bank simulator listening", cfg.Addr, nil, router(api, true))
	}
	var apiTLS *tls.Config
	if cfg.TLS != nil {
		if apiTLS, err = identity.ServerConfig(*cfg.TLS, identity.AllowServices(identity.Payments)); err != nil {
			return fmt.Errorf("bank tls: %w", err)
		}
	}
	public, admin := bankhttp.Split(api)
	g := lifecycle.NewGroup(ctx)
	g.Go("admin listener", func(ctx context.Context) error {
		return serveBank(ctx, tel, "bank admin listening", cfg.AdminAddr, nil, router(admin, true))
	})
	g.Go("listener", func(ctx context.Context) error {
		return serveBank(ctx, tel, "bank simulator listening", cfg.Addr, apiTLS, router(public, false))
	})
	return g.Wait()
}

// serveBank serves handler on addr, over TLS with tlsCfg when it is not nil.
func serveBank(ctx context.Context, tel *telemetry.Telemetry, msg, addr string, tlsCfg *tls.Config, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	tel.Logger.InfoContext(ctx, msg, "addr", ln.Addr().String(), "tls", tlsCfg != nil, "simulated", true)
	// A refused handshake (a caller that is not payments) goes to the log.
	srv := &http.Server{Handler: handler, ErrorLog: slog.NewLogLogger(tel.Logger.Handler(), slog.LevelWarn)}
	return httpkit.Serve(ctx, srv, ln, 10*time.Second)
}
