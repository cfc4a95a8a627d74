// Command migrate applies the embedded schema migrations of payonce's
// services and exits. The compose stack runs it as a one-shot job that the
// services wait on; services can also migrate at start-up
// (MIGRATE_ON_START=true), and both are safe together because goose holds a
// PostgreSQL advisory lock while it migrates.
//
// Usage:
//
//	migrate [up|version] [service ...]
//
// With no service named it handles every service. Each service's database
// URL comes from <SERVICE>_DATABASE_URL, e.g. ORDERS_DATABASE_URL, and the
// password of its role from <SERVICE>_DATABASE_PASSWORD or, as the compose
// job gives it, the file <SERVICE>_DATABASE_PASSWORD_FILE names. The job
// logs in as the migrate role, which becomes the service's role in the
// service's database, so the tables belong to the service
// (docs/adr/0041-database-roles.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "migrate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cmd, services := "up", migrations.Services()
	if len(args) > 1 {
		cmd = args[1]
	}
	if len(args) > 2 {
		services = args[2:]
	}
	if cmd != "up" && cmd != "version" {
		return fmt.Errorf("unknown command %q: want up or version", cmd)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var failures []error
	for _, service := range services {
		if !slices.Contains(migrations.Services(), service) {
			return fmt.Errorf("unknown service %q: want one of %v", service, migrations.Services())
		}
		prefix := strings.ToUpper(service)
		env := envconfig.New(getenv)
		dbURL := env.Required(prefix + "_DATABASE_URL")
		if pw := env.String(prefix+"_DATABASE_PASSWORD", ""); pw != "" && dbURL != "" {
			var err error
			if dbURL, err = identity.WithPassword(dbURL, pw); err != nil {
				env.Fail(fmt.Errorf("%s_DATABASE_URL: %w", prefix, err))
			}
		}
		if err := env.Err(); err != nil {
			failures = append(failures, err)
			continue
		}
		switch cmd {
		case "up":
			applied, err := migrations.Up(ctx, dbURL, service)
			for _, r := range applied {
				fmt.Fprintf(stdout, "%s: applied %d %s\n", service, r.Version, r.Source)
			}
			if err != nil {
				failures = append(failures, err)
				continue
			}
			if len(applied) == 0 {
				fmt.Fprintf(stdout, "%s: schema is current\n", service)
			}
		case "version":
			current, latest, err := migrations.Version(ctx, dbURL, service)
			if err != nil {
				failures = append(failures, err)
				continue
			}
			fmt.Fprintf(stdout, "%s: version %d of %d\n", service, current, latest)
		}
	}
	return errors.Join(failures...)
}
