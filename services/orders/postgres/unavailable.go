package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/puddle/v2"

	"github.com/payonce/payonce/internal/errs"
)

// retryAfterSeconds is the Retry-After of an answer given while the
// database is away: the same second payments asks for when its lock or the
// bank is away, short because an outage usually ends with a restart.
const retryAfterSeconds = 1

// unavailable turns an error that says the database cannot be reached
// right now into errs.Unavailable (503 with Retry-After: the request
// changed nothing and may be retried with the same key); every other
// error is returned as it is. It is applied where the store's errors leave
// for the service, so no caller sees an outage as a 500 "our fault".
func unavailable(err error) error {
	if err == nil || !databaseAway(err) {
		return err
	}
	return errs.Wrap(errs.Unavailable, "the orders database is unavailable; retry later with the same Idempotency-Key", err).
		WithRetryAfter(retryAfterSeconds)
}

// databaseAway reports whether err says the database is out of reach, not
// that the request was wrong: no connection could be made (refused, the
// server starting or shutting down, the database not accepting
// connections), the pool is closed (the instance is stopping), or a
// connection went away under a statement (the server was stopped or the
// backend terminated).
func databaseAway(err error) bool {
	var connect *pgconn.ConnectError
	if errors.As(err, &connect) || errors.Is(err, puddle.ErrClosedPool) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", // admin_shutdown: the server is stopping, or the backend was terminated
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now: starting up or shutting down
			"53300": // too_many_connections
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // the request ended (its caller gave up), not the database
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
