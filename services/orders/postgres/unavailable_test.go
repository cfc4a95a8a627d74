package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestABackendTerminatedUnderAStatementIsUnavailable: the error a real
// PostgreSQL sends to a statement whose backend an administrator (or a
// shutdown) terminates, 57P01, is classified unavailable with Retry-After,
// and so is every later use of the dead connection; errors that are the
// request's or the data's are left as they are.
func TestABackendTerminatedUnderAStatementIsUnavailable(t *testing.T) {
	ctx := context.Background()
	url := testenv.NewDatabase(t)
	victim, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close(ctx)
	admin, err := pgx.Connect(ctx, testenv.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)

	pid := victim.PgConn().PID()
	sleeping := make(chan error, 1)
	go func() {
		_, err := victim.Exec(ctx, `SELECT pg_sleep(60)`)
		sleeping <- err
	}()
	// Terminate it once it is inside the statement (pg_stat_activity says
	// so), so the error comes from the server, not from a refused connect.
	var terminated bool
	for deadline := time.Now().Add(30 * time.Second); !terminated; {
		if time.Now().After(deadline) {
			t.Fatal("the sleeping statement never showed in pg_stat_activity")
		}
		if err := admin.QueryRow(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'`, pid).Scan(&terminated); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
	}
	for _, err := range []error{<-sleeping, func() error { _, err := victim.Exec(ctx, `SELECT 1`); return err }()} {
		got := unavailable(fmt.Errorf("a statement: %w", err))
		if e := errs.As(got); e == nil || e.Kind != errs.Unavailable || e.RetryAfterSeconds <= 0 || !errors.Is(got, err) {
			t.Errorf("%v: classified %v, want unavailable with Retry-After, wrapping the cause", err, got)
		}
	}

	for _, err := range []error{
		&pgconn.PgError{Code: "23505"}, // unique_violation
		&pgconn.PgError{Code: "40001"}, // serialization_failure
		ErrOrderNotFound,
		pgx.ErrNoRows,
		context.Canceled,
		context.DeadlineExceeded,
	} {
		if got := unavailable(err); got != err {
			t.Errorf("%v classified as %v; it is not the database being away", err, got)
		}
	}
}
