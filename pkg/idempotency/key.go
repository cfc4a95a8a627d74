package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InitialRecoveryPoint is the recovery point of a key no phase has
// committed for. It is the only point at which a failed request leaves no
// trace: the key is released and a retry starts afresh.
const InitialRecoveryPoint = "started"

// finishedRecoveryPoint marks a key whose response is stored. Handlers
// never see it: a finished key is replayed, not run.
const finishedRecoveryPoint = "finished"

// Key is the right, held by one request at a time, to carry out the intent
// that an idempotency key names. A handler gets it with FromContext and
// moves the intent forward in atomic phases (Phase); each phase commits its
// own writes together with the key's new recovery point, so whoever holds
// the key next (a retry after a crash, or a recovery worker) resumes from
// the last committed phase instead of starting over.
//
// A Key is used by one goroutine, the request's.
type Key struct {
	store     *Store
	scope     string
	value     string
	holder    uuid.UUID
	point     string
	resumed   bool
	done      bool
	expiresAt time.Time

	// final is the request's last phase (FinalPhase): written, its
	// recovery point moved, not committed. Complete stores the response in
	// it and commits both at once; Release commits it alone. finalPoint is
	// the point it moves to, onCommit what waits for its commit, and
	// afterTx what waits for it to end, committed or not.
	final      pgx.Tx
	finalPoint string
	onCommit   []func()
	afterTx    []func()
}

type contextKey struct{}

// NewContext returns ctx carrying k; the middleware does this for the
// handler, and a recovery worker does it before calling service code.
func NewContext(ctx context.Context, k *Key) context.Context {
	return context.WithValue(ctx, contextKey{}, k)
}

// FromContext returns the key the request holds, or nil when the request
// did not come through the middleware (for example a GET).
func FromContext(ctx context.Context) *Key {
	k, _ := ctx.Value(contextKey{}).(*Key)
	return k
}

// Scope returns the caller the key belongs to.
func (k *Key) Scope() string { return k.scope }

// Value returns the key as the client sent it.
func (k *Key) Value() string { return k.value }

// RecoveryPoint returns the last committed recovery point:
// InitialRecoveryPoint for a fresh request, or the name returned by the
// last successful Phase, including one committed by a previous holder.
func (k *Key) RecoveryPoint() string { return k.point }

// Resumed reports whether this request took the key over from an earlier
// attempt rather than creating it.
func (k *Key) Resumed() bool { return k.resumed }

// ExpiresAt returns the end of the key's retention.
func (k *Key) ExpiresAt() time.Time { return k.expiresAt }

// Derive returns a stable key for a call to another system made on behalf
// of this one (for example the bank charge of a payment), so that when a
// takeover repeats the call, the other system sees the same key and does
// the work once. purpose tells several such calls apart. The result is a
// 64-character hex string, a valid Idempotency-Key anywhere.
func (k *Key) Derive(purpose string) string {
	h := sha256.New()
	for _, part := range []string{"payonce-derived-v1", k.scope, k.value, purpose} {
		fmt.Fprintf(h, "%d:%s;", len(part), part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Phase runs fn in one database transaction together with the move of the
// key's recovery point to the name fn returns, and renews this holder's
// lease. Either both commit or neither does, which is what makes the
// recovery point trustworthy: it never claims work that did not happen,
// and work that happened is never without its recovery point.
//
// Before fn runs, Phase locks the key's row and checks that this request
// still holds it. If the lease ran out and another request took the key
// over, Phase returns an error wrapping ErrKeyLost without calling fn: a
// holder that was presumed dead can wake up but cannot write. While a phase
// runs, a takeover waits for it.
//
// fn must return a new point: not "", not InitialRecoveryPoint (which
// means "nothing happened") and not "finished". It may return the current
// point to commit work without advancing. Outside calls (HTTP to the bank)
// belong between phases, never inside fn: a transaction must not stay open
// across a network call, and such calls must carry an idempotency key of
// their own (Derive), because a takeover may repeat them.
func (k *Key) Phase(ctx context.Context, fn func(tx pgx.Tx) (nextPoint string, err error)) error {
	tx, next, err := k.phase(ctx, fn)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("phase: commit: %w", err)
	}
	k.point = next
	return nil
}

// FinalPhase is Phase for the request's last writes: everything Phase
// says holds, but the transaction is left open, and Complete stores the
// response in it, so the phase's writes and the answer a replay gets
// commit together, in one disk flush instead of two. Until then nothing
// of the phase is visible: work that must wait for it (a nudge to the
// outbox relay, a crash test's failpoint) goes through OnCommit.
//
// FinalPhase must be the key's last phase: a Phase or FinalPhase after it
// fails. Between FinalPhase and Complete the request only builds its
// response (no network call, no other transaction: the phase holds the
// key's row and the rows it wrote). If the request fails instead (Release,
// as after a 5xx or a panic), the phase is committed without a response,
// and the key stays at the phase's point for the retry; if its commit
// fails, the phase never happened and the retry resumes from the point
// before it.
func (k *Key) FinalPhase(ctx context.Context, fn func(tx pgx.Tx) (nextPoint string, err error)) error {
	tx, next, err := k.phase(ctx, fn)
	if err != nil {
		return err
	}
	k.final, k.finalPoint = tx, next
	return nil
}

// phase opens a phase's transaction, checks that this request still holds
// the key, runs fn and moves the recovery point, leaving the commit (or,
// on an error, the rollback done here) to its caller.
func (k *Key) phase(ctx context.Context, fn func(tx pgx.Tx) (nextPoint string, err error)) (_ pgx.Tx, next string, err error) {
	switch {
	case k.done:
		return nil, "", errors.New("idempotency: Phase called after the response was stored")
	case k.final != nil:
		return nil, "", errors.New("idempotency: Phase called after the final phase")
	}
	tx, err := k.store.pool.Begin(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("phase: begin: %w", err)
	}
	// Rolled back unless handed to the caller: on an error, and when fn
	// panics (a transaction left open would hold the key's row, and every
	// row fn locked, until the connection dies).
	handed := false
	defer func() {
		if !handed {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()

	var current string
	err = tx.QueryRow(ctx, `
		SELECT recovery_point FROM idempotency_keys
		 WHERE scope = $1 AND key = $2 AND holder = $3
		   FOR UPDATE`, k.scope, k.value, k.holder).Scan(&current)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, "", errLost()
	case err != nil:
		return nil, "", fmt.Errorf("phase: lock key: %w", err)
	}
	next, err = fn(tx)
	if err != nil {
		return nil, "", err
	}
	if next == "" || next == InitialRecoveryPoint || next == finishedRecoveryPoint {
		return nil, "", fmt.Errorf("phase: %q is not a recovery point a phase may move to", next)
	}
	if _, err = tx.Exec(ctx, `
		UPDATE idempotency_keys
		   SET recovery_point = $4, locked_until = now() + $5::bigint * interval '1 microsecond'
		 WHERE scope = $1 AND key = $2 AND holder = $3`,
		k.scope, k.value, k.holder, next, k.store.cfg.LockTimeout.Microseconds()); err != nil {
		return nil, "", fmt.Errorf("phase: advance recovery point: %w", err)
	}
	handed = true
	return tx, next, nil
}

// commitFinal commits the open final phase, if there is one, and runs
// what waited for it. The phase is over either way: on an error it never
// happened, and the key's point is the one before it.
func (k *Key) commitFinal(ctx context.Context) error {
	if k.final == nil {
		return nil
	}
	tx := k.final
	k.final = nil
	defer k.endFinal()
	if err := tx.Commit(ctx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		k.onCommit = nil
		return fmt.Errorf("final phase: commit: %w", err)
	}
	k.point = k.finalPoint
	for _, fn := range k.onCommit {
		fn()
	}
	k.onCommit = nil
	return nil
}

// rollbackFinal ends the open final phase without committing it.
func (k *Key) rollbackFinal(ctx context.Context) {
	if k.final == nil {
		return
	}
	_ = k.final.Rollback(context.WithoutCancel(ctx))
	k.final, k.onCommit = nil, nil
	k.endFinal()
}

// endFinal runs what waited for the final phase to end (AfterTx).
func (k *Key) endFinal() {
	after := k.afterTx
	k.afterTx = nil
	for _, fn := range after {
		fn()
	}
}

// AfterTx runs fn once the transaction that holds the writes made so far
// under ctx has ended, committed or not: at once, unless ctx carries a Key
// whose final phase is still open; then right after that phase commits or
// rolls back. It is for what must not happen inside the open phase but
// must happen either way: releasing a lease on the customer (a network
// call, which FinalPhase's transaction must not wait on; and the lease is
// then held until the writes it covers are durable).
func AfterTx(ctx context.Context, fn func()) {
	if k := FromContext(ctx); k != nil && k.final != nil {
		k.afterTx = append(k.afterTx, fn)
		return
	}
	fn()
}

// OnCommit runs fn once the writes made so far under ctx are committed:
// at once, unless ctx carries a Key whose final phase is still open; then
// right after that phase commits (with the response, or at Release), and
// never if it does not.
func OnCommit(ctx context.Context, fn func()) {
	if k := FromContext(ctx); k != nil && k.final != nil {
		k.onCommit = append(k.onCommit, fn)
		return
	}
	fn()
}

// Complete stores resp as the key's final answer, replayed to every retry
// until the key expires, and ends this holder's lease. It fails with
// ErrKeyLost if the key was taken over; then nothing is stored and the new
// holder's answer wins.
func (k *Key) Complete(ctx context.Context, resp Response) error {
	header, err := json.Marshal(resp.Header)
	if err != nil {
		return fmt.Errorf("complete: encode headers: %w", err)
	}
	body := resp.Body
	if body == nil {
		body = []byte{} // NULL would read as "compacted"
	}
	const store = `
		UPDATE idempotency_keys
		   SET recovery_point = 'finished', holder = NULL, locked_until = NULL,
		       response_status = $4, response_headers = $5, response_body = $6, completed_at = now()
		 WHERE scope = $1 AND key = $2 AND holder = $3`
	if k.final != nil {
		// The final phase holds the key's row: the response joins its
		// writes, and one commit makes both durable.
		if _, err := k.final.Exec(ctx, store, k.scope, k.value, k.holder, resp.Status, header, body); err != nil {
			k.rollbackFinal(ctx)
			return fmt.Errorf("complete: store response: %w", err)
		}
		if err := k.commitFinal(ctx); err != nil {
			return fmt.Errorf("complete: %w", err)
		}
		k.done = true
		return nil
	}
	tag, err := k.store.pool.Exec(ctx, store, k.scope, k.value, k.holder, resp.Status, header, body)
	if err != nil {
		return fmt.Errorf("complete: store response: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return errLost()
	}
	k.done = true
	return nil
}

// Release gives the key up after a failure that is not the request's
// final answer (a 5xx). If no phase has committed, the key is deleted, so
// a retry runs afresh as if this attempt never happened; otherwise it
// stays at its recovery point with no holder, so the next retry takes it
// over at once and rolls forward. The database decides which, not this
// Key's memory: a phase whose commit reply was lost may have committed.
func (k *Key) Release(ctx context.Context) error {
	// A final phase that ran is real work (a bank's answer recorded): it is
	// kept, and the retry finds the key at its point. If its commit fails,
	// the database still says where the key stands.
	finalErr := k.commitFinal(ctx)
	k.done = true
	tag, err := k.store.pool.Exec(ctx, `
		DELETE FROM idempotency_keys
		 WHERE scope = $1 AND key = $2 AND holder = $3 AND recovery_point = 'started'`,
		k.scope, k.value, k.holder)
	if err != nil {
		return errors.Join(finalErr, fmt.Errorf("release key: %w", err))
	}
	if tag.RowsAffected() == 1 {
		return finalErr
	}
	if _, err := k.store.pool.Exec(ctx, `
		UPDATE idempotency_keys SET holder = NULL, locked_until = NULL
		 WHERE scope = $1 AND key = $2 AND holder = $3`,
		k.scope, k.value, k.holder); err != nil {
		return errors.Join(finalErr, fmt.Errorf("unlock key: %w", err))
	}
	return finalErr
}

// forgetIfUnstarted deletes the key if no phase has committed, and reports
// whether it did: the request changed nothing, so its refusal is not stored
// and a corrected retry with the same key runs. A key past its first phase
// is left alone (its answer is then stored like any final one).
func (k *Key) forgetIfUnstarted(ctx context.Context) (bool, error) {
	if k.final != nil {
		return false, nil // the final phase wrote; it is not unstarted
	}
	tag, err := k.store.pool.Exec(ctx, `
		DELETE FROM idempotency_keys
		 WHERE scope = $1 AND key = $2 AND holder = $3 AND recovery_point = 'started'`,
		k.scope, k.value, k.holder)
	if err != nil {
		return false, fmt.Errorf("forget unstarted key: %w", err)
	}
	if tag.RowsAffected() == 1 {
		k.done = true
		return true, nil
	}
	return false, nil
}

// Tx runs fn in one transaction on pool. When ctx carries a Key (the
// request came through the middleware), the transaction is the key's next
// Phase, ending at point: the service's writes and the key's progress then
// commit together, and a holder that lost its key cannot commit anything.
// Without a Key (a message consumer, a background worker) it is a plain
// transaction. A store calls it for every write so it works the same
// behind the API and behind a queue.
func Tx(ctx context.Context, pool *pgxpool.Pool, point string, fn func(pgx.Tx) error) error {
	return inPhase(ctx, pool, point, fn, (*Key).Phase)
}

// FinalTx is Tx for a request's last writes. When ctx carries a Key it is
// the key's FinalPhase, ending at point: its commit waits for the response
// and makes the writes and the stored answer durable together (see
// FinalPhase; what must wait for the commit goes through OnCommit).
// Without a Key it is a plain transaction, committed before it returns.
func FinalTx(ctx context.Context, pool *pgxpool.Pool, point string, fn func(pgx.Tx) error) error {
	return inPhase(ctx, pool, point, fn, (*Key).FinalPhase)
}

// inPhase runs fn as phase of ctx's Key, ending at point, or as a plain
// transaction when ctx carries none.
func inPhase(ctx context.Context, pool *pgxpool.Pool, point string, fn func(pgx.Tx) error,
	phase func(*Key, context.Context, func(pgx.Tx) (string, error)) error) error {
	if key := FromContext(ctx); key != nil {
		return phase(key, ctx, func(tx pgx.Tx) (string, error) {
			if err := fn(tx); err != nil {
				return "", err
			}
			return point, nil
		})
	}
	return pgx.BeginFunc(ctx, pool, fn)
}
