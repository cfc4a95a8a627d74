// Package testenv gives tests real infrastructure: a throwaway PostgreSQL
// cluster shared by a test package with a fresh database per test, and a
// real NATS server with JetStream.
//
// A package that uses it starts with
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
// The cluster starts lazily, on the first test that asks for a database, and
// is removed when the package's tests end. Set PAYONCE_TEST_DATABASE_URL (a
// superuser URL) or PAYONCE_TEST_NATS_URL to use servers you already run.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/internal/localnats"
	"github.com/payonce/payonce/internal/localpg"
)

// DatabaseURLEnv names an existing PostgreSQL server to use instead of a
// throwaway cluster. The role must be allowed to create databases.
const DatabaseURLEnv = "PAYONCE_TEST_DATABASE_URL"

// NATSURLEnv names an existing NATS server with JetStream to use instead of
// a fresh one per test.
const NATSURLEnv = "PAYONCE_TEST_NATS_URL"

var shared struct {
	mu       sync.Mutex
	inMain   bool
	adminURL string
	cluster  *localpg.Cluster
	err      error
}

// Main runs the package's tests and then stops the shared PostgreSQL
// cluster, returning the exit code for os.Exit.
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.inMain = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster != nil {
		if err := shared.cluster.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop postgres: %v\n", err)
		}
	}
	return code
}

// AdminURL returns a superuser URL to the shared server (database
// "postgres"), starting the throwaway cluster on first use.
func AdminURL(t testing.TB) string {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.inMain {
		t.Fatal("testenv: this package has no TestMain; add\n\tfunc TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }")
	}
	if shared.adminURL != "" {
		return shared.adminURL
	}
	if shared.err != nil {
		t.Fatalf("testenv: postgres: %v", shared.err)
	}
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		shared.adminURL = u
		return u
	}
	// initdb and the first start of a throwaway cluster take seconds on a
	// quiet machine; at load 68 (a compose stack beside make test) initdb
	// alone outlived a 60 s budget and was killed, failing every test of
	// the package that shares it. The bound stays: it is generous, not open.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		shared.err = err
		t.Fatalf("testenv: postgres: %v", err)
	}
	shared.cluster = c
	shared.adminURL = c.URL("postgres")
	return shared.adminURL
}

// NewDatabase creates an empty database for this test alone and returns its
// URL; the database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminURL(t)
	name := "t_" + sanitize(t.Name()) + "_" + randomSuffix()
	ctx := context.Background()
	if err := localpg.CreateDatabase(ctx, admin, name); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := localpg.DropDatabase(context.Background(), admin, name); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return withDatabase(t, admin, name)
}

// NewPool creates a fresh database and a pgx pool on it, closed when the
// test ends.
func NewPool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	dbURL := NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("testenv: pool: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs first: the pool
	// closes before the database is dropped.
	t.Cleanup(pool.Close)
	return pool, dbURL
}

// NATS returns the URL of a NATS server with JetStream for this test: a
// fresh server (so streams never leak between tests), embedded or, when
// PAYONCE_NATS_SERVER names a nats-server binary (make test builds one),
// a child process; or the one named by PAYONCE_TEST_NATS_URL.
func NATS(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(NATSURLEnv); u != "" {
		return u
	}
	s, err := localnats.Start(localnats.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s.URL()
}

func withDatabase(t testing.TB, adminURL, name string) string {
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("testenv: %s is not a URL: %v", DatabaseURLEnv, err)
	}
	u.Path = "/" + name
	return u.String()
}

// sanitize turns a test name into a safe database-name fragment; Postgres
// identifiers are limited to 63 bytes, so it is cut short.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 40 {
			break
		}
	}
	return b.String()
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
