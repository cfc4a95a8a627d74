// Package migrations holds each service's SQL schema history and applies it.
//
// Every service owns one database (orders, payments) and one directory of
// numbered SQL files here, embedded into the binaries. They are applied by
// goose (see docs/adr/0002-migrations-goose.md) under a PostgreSQL advisory
// lock, so several instances starting at once, or the compose one-shot
// migrate job racing a service, apply each migration exactly once.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"slices"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver goose runs on
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed orders/*.sql payments/*.sql
var files embed.FS

// Services lists the services that own a database, in a stable order.
func Services() []string { return []string{"orders", "payments"} }

// FS returns the migration files of service.
func FS(service string) (fs.FS, error) {
	if !slices.Contains(Services(), service) {
		return nil, fmt.Errorf("no migrations for service %q (have %v)", service, Services())
	}
	return fs.Sub(files, service)
}

// Result describes one applied migration.
type Result struct {
	Version int64
	Source  string
}

// Up applies service's pending migrations to the database at databaseURL and
// returns those it applied: none when the schema is already current.
func Up(ctx context.Context, databaseURL, service string) ([]Result, error) {
	var applied []Result
	err := withProvider(ctx, databaseURL, service, func(p *goose.Provider) error {
		results, err := p.Up(ctx)
		for _, r := range results {
			applied = append(applied, Result{Version: r.Source.Version, Source: r.Source.Path})
		}
		return err
	})
	if err != nil {
		return applied, fmt.Errorf("migrate %s up: %w", service, err)
	}
	return applied, nil
}

// Version returns the schema version applied to the database and the newest
// version this binary knows. A service refuses to start when they differ
// and it was not asked to migrate.
func Version(ctx context.Context, databaseURL, service string) (current, latest int64, err error) {
	err = withProvider(ctx, databaseURL, service, func(p *goose.Provider) error {
		current, latest, err = p.GetVersions(ctx)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("migration version of %s: %w", service, err)
	}
	return current, latest, nil
}

func withProvider(ctx context.Context, databaseURL, service string, fn func(*goose.Provider) error) error {
	fsys, err := FS(service)
	if err != nil {
		return err
	}
	db, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithSessionLocker(locker),
		// Only the embedded files count: a forked service registering Go
		// migrations globally must not leak into another service's history.
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return err
	}
	return fn(p)
}
