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
// URL comes from <SERVICE>_DATABASE_URL, e.g. ORDERS_DATABASE_URL.
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
		urlVar := strings.ToUpper(service) + "_DATABASE_URL"
		dbURL := getenv(urlVar)
		if dbURL == "" {
			failures = append(failures, fmt.Errorf("%s is not set", urlVar))
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
