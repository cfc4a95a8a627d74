package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// database is one service's database in the dev stack's PostgreSQL, which
// the control endpoint may take away for a while. Both databases live in one
// cluster, so "stopping" one is done the way a failover or a crash looks to
// its service, without touching the other: PostgreSQL refuses every new
// connection to it (ALLOW_CONNECTIONS false) and ends the ones it has. This
// is the outage of docs/failure-scenarios.md ("a service's database gone for
// a while"), pressed from the console instead of typed into psql.
type database struct {
	name         string
	superuserURL string // the cluster's superuser, on loopback

	mu      sync.Mutex
	stopped bool
	until   time.Time
	resume  *time.Timer
}

// errStopped and errNotStopped are the database's 409s.
var (
	errStopped    = errors.New("the database already refuses connections")
	errNotStopped = errors.New("the database accepts connections")
)

// stop makes the database refuse connections for d, then accept them again.
func (db *database) stop(ctx context.Context, d time.Duration) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.stopped {
		return errStopped
	}
	err := db.exec(ctx, func(conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db.name}.Sanitize()+` ALLOW_CONNECTIONS false`); err != nil {
			return err
		}
		// End what the services hold, so the outage starts now and not
		// when their pools next dial.
		_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db.name)
		return err
	})
	if err != nil {
		return err
	}
	db.stopped, db.until = true, time.Now().Add(d)
	db.resume = time.AfterFunc(d, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = db.start(ctx) // errNotStopped: started by hand meanwhile
	})
	return nil
}

// start makes the database accept connections again.
func (db *database) start(ctx context.Context) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if !db.stopped {
		return errNotStopped
	}
	err := db.exec(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `ALTER DATABASE `+pgx.Identifier{db.name}.Sanitize()+` ALLOW_CONNECTIONS true`)
		return err
	})
	if err != nil {
		return err
	}
	if db.resume != nil {
		db.resume.Stop()
		db.resume = nil
	}
	db.stopped, db.until = false, time.Time{}
	return nil
}

// exec runs f on a connection to the cluster's maintenance database as the
// superuser (the service's own database may be refusing connections).
func (db *database) exec(ctx context.Context, f func(*pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, db.superuserURL)
	if err != nil {
		return fmt.Errorf("database %s: %w", db.name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := f(conn); err != nil {
		return fmt.Errorf("database %s: %w", db.name, err)
	}
	return nil
}

// databaseState is one database as the control endpoint lists it.
type databaseState struct {
	Name    string    `json:"name"`
	Stopped bool      `json:"stopped"`
	Until   time.Time `json:"until,omitzero"`
}

func (db *database) state() databaseState {
	db.mu.Lock()
	defer db.mu.Unlock()
	return databaseState{Name: db.name, Stopped: db.stopped, Until: db.until}
}

// manageDatabases registers the services' databases with the control
// endpoint; at shutdown a stopped one is given back first, so the services
// drain against a database that answers.
func (s *stack) manageDatabases(superuserURL string, names []string) {
	s.databases = map[string]*database{}
	for _, name := range slices.Sorted(slices.Values(names)) {
		db := &database{name: name, superuserURL: superuserURL}
		s.databases[name] = db
		s.onStop(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := db.start(ctx); err != nil && !errors.Is(err, errNotStopped) {
				return err
			}
			return nil
		})
	}
}
