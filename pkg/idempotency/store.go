package idempotency

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults for Config fields left zero.
const (
	// DefaultLockTimeout is how long a holder keeps a key without
	// committing a phase before another request may take it over. It must
	// exceed the slowest honest step between two phases (an outside call
	// with its timeout), or live holders get taken over.
	DefaultLockTimeout = 30 * time.Second
	// DefaultRetention is how long a stored response is replayed: 24 hours,
	// as at Stripe, measured from the first request.
	DefaultRetention = 24 * time.Hour
	// DefaultTombstonePeriod is how long an expired key is still remembered
	// (without its response) so that a late retry is refused rather than
	// executed again.
	DefaultTombstonePeriod = 7 * 24 * time.Hour
)

// Config tunes a Store. Zero fields take the defaults above.
type Config struct {
	LockTimeout     time.Duration
	Retention       time.Duration
	TombstonePeriod time.Duration
	// Logger receives errors of the cleanup loop; nil discards them.
	Logger *slog.Logger
}

// Store keeps idempotency keys in PostgreSQL, in the table Schema creates.
// Every decision about who holds a key is taken by one SQL statement and
// every time comes from the database clock, so any number of service
// instances, with skewed clocks, can share it.
type Store struct {
	pool *pgxpool.Pool
	cfg  Config
}

// NewStore returns a store on pool. Create the table first (Schema).
func NewStore(pool *pgxpool.Pool, cfg Config) *Store {
	if cfg.LockTimeout <= 0 {
		cfg.LockTimeout = DefaultLockTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.TombstonePeriod <= 0 {
		cfg.TombstonePeriod = DefaultTombstonePeriod
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Store{pool: pool, cfg: cfg}
}

// Retention returns how long this store replays a key's response.
func (s *Store) Retention() time.Duration { return s.cfg.Retention }

// Outcome says what Begin decided for a request.
type Outcome string

// The outcomes of Begin. Claimed and Resumed hand the request a Key to run
// with; the others answer it without running it.
const (
	// Claimed: a new key; run the request from InitialRecoveryPoint.
	Claimed Outcome = "claimed"
	// Resumed: the previous holder died or gave up (lease expired or
	// released after a failure); continue from Key.RecoveryPoint.
	Resumed Outcome = "resumed"
	// Replayed: the request finished before; Attempt.Response is its answer.
	Replayed Outcome = "replayed"
	// InFlight: another request holds the key right now.
	InFlight Outcome = "in_flight"
	// Mismatch: the key was first used with a different fingerprint.
	Mismatch Outcome = "mismatch"
	// Expired: the key is past retention and is refused.
	Expired Outcome = "expired"
)

// Response is a stored HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Attempt is the result of Begin.
type Attempt struct {
	Outcome Outcome
	// Key is set for Claimed and Resumed: this request now holds the key.
	Key *Key
	// Response is set for Replayed.
	Response *Response
	// ExpiresAt is the end of the key's retention (zero for Mismatch).
	ExpiresAt time.Time
}

// Begin decides what to do with a request carrying key for the caller
// scope. The decision to own a key is taken by a single INSERT ... ON
// CONFLICT DO UPDATE ... RETURNING: of any number of concurrent requests,
// exactly one gets a row back. A plain read goes first only as a fast path
// for replays, conflicts and mismatches, which then cost one index lookup
// and no write (a conflicting upsert would lock the row and force a commit
// to disk even when it changes nothing).
func (s *Store) Begin(ctx context.Context, scope, key string, fp Fingerprint) (Attempt, error) {
	// Three rounds cover every interleaving: a claim loses only to a row
	// that exists, so the next read sees that row; the row can disappear
	// again only if its holder released it, which happens once per failure.
	for range 3 {
		a, takeable, err := s.look(ctx, scope, key, fp)
		if err != nil || !takeable {
			return a, err
		}
		a, claimed, err := s.claim(ctx, scope, key, fp)
		if err != nil || claimed {
			return a, err
		}
	}
	return Attempt{Outcome: InFlight}, nil
}

// look reads the key. takeable means there is no row, or one whose holder
// is gone: only then is a claim worth trying.
func (s *Store) look(ctx context.Context, scope, key string, fp Fingerprint) (a Attempt, takeable bool, err error) {
	var (
		storedFP         []byte
		locked, expired  bool
		status           *int32
		headerJSON, body []byte
	)
	err = s.pool.QueryRow(ctx, `
		SELECT fingerprint, coalesce(locked_until > now(), false), expires_at <= now(), expires_at,
		       response_status, response_headers, response_body
		  FROM idempotency_keys
		 WHERE scope = $1 AND key = $2`, scope, key).
		Scan(&storedFP, &locked, &expired, &a.ExpiresAt, &status, &headerJSON, &body)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Attempt{}, true, nil
	case err != nil:
		return Attempt{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	switch {
	case expired:
		// Checked first: after retention nothing about the key, not even
		// whether the request matches, is worth telling.
		a.Outcome = Expired
	case !bytes.Equal(storedFP, fp[:]):
		a.Outcome = Mismatch
	case status != nil:
		resp := &Response{Status: int(*status), Body: body, Header: http.Header{}}
		if len(headerJSON) > 0 {
			if err := json.Unmarshal(headerJSON, &resp.Header); err != nil {
				return Attempt{}, false, fmt.Errorf("decode stored headers: %w", err)
			}
		}
		a.Outcome, a.Response = Replayed, resp
	case locked:
		a.Outcome = InFlight
	default:
		return a, true, nil
	}
	return a, false, nil
}

// claim is the one statement that makes a request the key's holder: it
// inserts a new key, or takes over an unfinished one whose lease ended.
// Both leases and retention are computed from the database's now().
func (s *Store) claim(ctx context.Context, scope, key string, fp Fingerprint) (Attempt, bool, error) {
	holder := uuid.New()
	var (
		point    string
		inserted bool
		a        Attempt
	)
	err := s.pool.QueryRow(ctx, `
		INSERT INTO idempotency_keys AS k
		       (scope, key, fingerprint, recovery_point, holder, locked_until, expires_at)
		VALUES ($1, $2, $3, 'started', $4,
		        now() + $5::bigint * interval '1 microsecond',
		        now() + $6::bigint * interval '1 microsecond')
		ON CONFLICT (scope, key) DO UPDATE
		   SET holder = EXCLUDED.holder, locked_until = EXCLUDED.locked_until
		 WHERE k.fingerprint = EXCLUDED.fingerprint
		   AND k.response_status IS NULL
		   AND (k.locked_until IS NULL OR k.locked_until <= now())
		   AND k.expires_at > now()
		RETURNING k.recovery_point, k.expires_at, k.xmax = 0`,
		scope, key, fp[:], holder,
		s.cfg.LockTimeout.Microseconds(), s.cfg.Retention.Microseconds()).
		Scan(&point, &a.ExpiresAt, &inserted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Someone else's row stood in the way; Begin reads it again.
		return Attempt{}, false, nil
	case err != nil:
		return Attempt{}, false, fmt.Errorf("claim idempotency key: %w", err)
	}
	a.Outcome = Claimed
	if !inserted { // xmax is set only when ON CONFLICT updated a row
		a.Outcome = Resumed
	}
	a.Key = &Key{store: s, scope: scope, value: key, holder: holder, point: point,
		resumed: !inserted, expiresAt: a.ExpiresAt}
	return a, true, nil
}

// DeleteExpired enforces retention. It drops the stored responses of keys
// past retention, leaving tombstones that still refuse the key, and deletes
// the tombstones older than the tombstone period. It returns how many keys
// it deleted. Work goes in batches so that a large backlog never holds
// locks for long; any number of instances may run it at once.
func (s *Store) DeleteExpired(ctx context.Context) (int, error) {
	const batch = 1000
	for {
		tag, err := s.pool.Exec(ctx, `
			UPDATE idempotency_keys SET response_headers = NULL, response_body = NULL
			 WHERE ctid IN (SELECT ctid FROM idempotency_keys
			                 WHERE expires_at <= now() AND response_body IS NOT NULL
			                 LIMIT $1)`, batch)
		if err != nil {
			return 0, fmt.Errorf("compact expired idempotency keys: %w", err)
		}
		if tag.RowsAffected() < batch {
			break
		}
	}
	deleted := 0
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM idempotency_keys
			 WHERE ctid IN (SELECT ctid FROM idempotency_keys
			                 WHERE expires_at <= now() - $1::bigint * interval '1 microsecond'
			                 LIMIT $2)`, s.cfg.TombstonePeriod.Microseconds(), batch)
		if err != nil {
			return deleted, fmt.Errorf("delete idempotency tombstones: %w", err)
		}
		deleted += int(tag.RowsAffected())
		if tag.RowsAffected() < batch {
			return deleted, nil
		}
	}
}

// RunCleanup calls DeleteExpired every interval until ctx ends, logging
// (not returning) failures so that a database blip does not stop cleanup
// for good. It returns ctx's error.
func (s *Store) RunCleanup(ctx context.Context, interval time.Duration) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if n, err := s.DeleteExpired(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.ErrorContext(ctx, "idempotency cleanup failed", "err", err)
		} else if n > 0 {
			s.cfg.Logger.InfoContext(ctx, "idempotency cleanup", "deleted", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Abandoned describes an unfinished key whose holder is gone, for a
// recovery worker: passing Scope, Key and Fingerprint to Begin takes it
// over (Outcome Resumed) so the worker can roll it forward.
type Abandoned struct {
	Scope         string
	Key           string
	Fingerprint   Fingerprint
	RecoveryPoint string
}

// Abandoned lists up to limit keys that got past their first phase but
// whose holder's lease ended without a final response: work that a client
// may never retry, so a worker should finish it. Keys still at
// InitialRecoveryPoint are not listed: nothing happened for them yet, and
// running them without the client would be a guess at its intent.
func (s *Store) Abandoned(ctx context.Context, limit int) ([]Abandoned, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT scope, key, fingerprint, recovery_point
		  FROM idempotency_keys
		 WHERE response_status IS NULL AND recovery_point <> 'started'
		   AND (locked_until IS NULL OR locked_until <= now())
		   AND expires_at > now()
		 ORDER BY created_at
		 LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list abandoned idempotency keys: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Abandoned, error) {
		var a Abandoned
		var fp []byte
		err := row.Scan(&a.Scope, &a.Key, &fp, &a.RecoveryPoint)
		copy(a.Fingerprint[:], fp)
		return a, err
	})
}
