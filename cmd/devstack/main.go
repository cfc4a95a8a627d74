// Command devstack runs payonce's topology as local processes, with no
// Docker: a throwaway PostgreSQL cluster holding one database per service
// (migrated), a NATS server with JetStream, and the payonce services that
// exist. It prints every URL, and Ctrl-C stops everything and removes the
// throwaway data, leaving nothing running.
//
// It is the default way to run payonce on a machine with Go and the
// PostgreSQL server binaries; deploy/ has the docker compose equivalent.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/localnats"
	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// config is the dev stack's whole configuration. Ports are fixed by default
// so the README's curl commands work as written; 0 picks free ports (tests).
type config struct {
	PostgresPort int
	NATSPort     int
}

func loadConfig(args []string, getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	cfg := config{
		PostgresPort: env.Int("DEVSTACK_POSTGRES_PORT", 55432),
		NATSPort:     env.Int("DEVSTACK_NATS_PORT", 4222),
	}
	if err := env.Err(); err != nil {
		return cfg, err
	}
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.IntVar(&cfg.PostgresPort, "postgres-port", cfg.PostgresPort, "PostgreSQL port on 127.0.0.1 (0: any free port)")
	fs.IntVar(&cfg.NATSPort, "nats-port", cfg.NATSPort, "NATS port on 127.0.0.1 (0: any free port)")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(args, getenv)
	if err != nil {
		return err
	}
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	fmt.Fprintln(stdout, "devstack: starting PostgreSQL")
	pg, err := localpg.Start(startCtx, localpg.Options{Durable: true, Port: cfg.PostgresPort})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer pg.Stop()
	databaseURLs := map[string]string{}
	for _, service := range migrations.Services() {
		if err := pg.CreateDatabase(startCtx, service); err != nil {
			return err
		}
		databaseURLs[service] = pg.URL(service)
		if _, err := migrations.Up(startCtx, databaseURLs[service], service); err != nil {
			return err
		}
	}

	fmt.Fprintln(stdout, "devstack: starting NATS with JetStream")
	nats, err := localnats.Start(localnats.Options{Port: cfg.NATSPort})
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	defer nats.Shutdown()

	fmt.Fprintln(stdout, "devstack: ready")
	for _, service := range migrations.Services() {
		fmt.Fprintf(stdout, "  %-22s %s\n", service+" database", databaseURLs[service])
	}
	fmt.Fprintf(stdout, "  %-22s %s\n", "nats", nats.URL())
	fmt.Fprintln(stdout, "devstack: press Ctrl-C to stop and remove everything")

	<-ctx.Done()
	fmt.Fprintln(stdout, "devstack: stopping")
	return nil
}
