package idempotency

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// finishInFinalPhase is the app's phase 2 as a service's last writes are
// made (idempotency.FinalTx): the bank call, then the key's FinalPhase,
// whose RETURNING is the response; the middleware stores that response in
// the same transaction and commits both. An OnCommit hook records what
// another connection sees once the commit is done.
func (a *app) finishInFinalPhase(w http.ResponseWriter, r *http.Request, key *Key) {
	ctx := r.Context()
	fail := func(err error) { httpkit.ErrorEncoder(ctx, err, w) }
	ref := a.bank.charge(key.Derive("bank-charge"))
	var resp chargeResponse
	err := key.FinalPhase(ctx, func(tx pgx.Tx) (string, error) {
		var xact string
		var pid int64
		if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::xid::text, pg_backend_pid()`).Scan(&xact, &pid); err != nil {
			return "", err
		}
		a.finalXact.Store(&xact)
		a.finalPID.Store(pid)
		err := tx.QueryRow(ctx, `UPDATE charges SET status = 'charged', bank_ref = $3
			WHERE scope = $1 AND idem_key = $2
			RETURNING id, amount, currency, status, bank_ref`, key.Scope(), key.Value(), ref).
			Scan(&resp.ID, &resp.Amount, &resp.Currency, &resp.Status, &resp.BankRef)
		return "charged", err
	})
	if err != nil {
		fail(err)
		return
	}
	OnCommit(ctx, func() { a.seenAfterCommit.Store(ptr(a.chargeStatus(key.Value()))) })
	AfterTx(ctx, func() { a.afterTxRuns.Add(1) })
	if hook := a.afterFinal.Load(); hook != nil {
		(*hook)(key)
	}
	switch {
	case a.failAfterFinal.Load():
		fail(errors.New("injected failure after the final phase"))
		return
	case a.rejectAfterFinal.Load():
		fail(errs.E(errs.Conflict, "refused after the final phase"))
		return
	}
	resp.Recovered = key.Resumed()
	_ = httpkit.EncodeJSON(ctx, w, httpkit.Created{Body: resp, Location: "/v1/charges/" + strconv.FormatInt(resp.ID, 10)})
}

func ptr[T any](v T) *T { return &v }

// chargeStatus reads a charge's status on a connection of its own: what
// every other request would see ("" when there is no row).
func (a *app) chargeStatus(key string) string {
	var status string
	err := a.pool.QueryRow(context.Background(), `SELECT status FROM charges WHERE idem_key = $1`, key).Scan(&status)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		a.t.Errorf("read charge: %v", err)
	}
	return status
}

func (a *app) xmin(table, key string) string {
	a.t.Helper()
	var x string
	if err := a.pool.QueryRow(context.Background(), `SELECT xmin::text FROM `+table+` WHERE key = $1`, key).Scan(&x); err != nil {
		a.t.Fatalf("xmin of %s: %v", table, err)
	}
	return x
}

// TestFinalPhaseCommitsWithTheResponse: the last phase's writes and the
// stored response are one transaction (the key row and the charge row were
// last written by the phase's own transaction id), nothing of the phase is
// visible to others until the response is stored, what waits on OnCommit
// runs after the commit, and a retry replays exactly the first answer.
func TestFinalPhaseCommitsWithTheResponse(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.final.Store(true)
	var before string
	hook := func(*Key) { before = a.chargeStatus("k") }
	a.afterFinal.Store(&hook)

	first := a.post("alice", "k", chargeBody)
	if first.status != http.StatusCreated || first.charge(t).Status != "charged" {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	xact := *a.finalXact.Load()
	var chargeXmin string
	if err := a.pool.QueryRow(t.Context(), `SELECT xmin::text FROM charges WHERE idem_key = 'k'`).Scan(&chargeXmin); err != nil {
		t.Fatal(err)
	}
	if keyXmin := a.xmin("idempotency_keys", "k"); keyXmin != xact || chargeXmin != xact {
		t.Fatalf("final phase in transaction %s; the charge row was last written by %s and the stored response by %s: want one transaction",
			xact, chargeXmin, keyXmin)
	}
	if before != "recorded" {
		t.Fatalf("before the response was stored another connection saw the charge %q; want the phase invisible (recorded)", before)
	}
	if seen := a.seenAfterCommit.Load(); seen == nil || *seen != "charged" {
		t.Fatalf("OnCommit saw %v; want it run once the commit is visible (charged)", seen)
	}
	if n := a.afterTxRuns.Load(); n != 1 {
		t.Fatalf("AfterTx ran %d times, want once, after the commit", n)
	}
	replay := a.post("alice", "k", chargeBody)
	if replay.status != first.status || replay.body != first.body || replay.header.Get(ReplayedHeader) != "true" ||
		replay.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("replay %d %v %s; first %d %v %s", replay.status, replay.header, replay.body, first.status, first.header, first.body)
	}
}

// TestLostFinalCommitLeavesTheKeyAtThePointBefore: the database connection
// of the final phase dies before the response is stored. Then neither the
// phase nor the response exists: the client gets a 503 to retry, the key
// is free at the point before the phase, nothing waiting on OnCommit ran,
// and the retry rolls forward, the bank seeing the same key again.
func TestLostFinalCommitLeavesTheKeyAtThePointBefore(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.final.Store(true)
	hook := func(*Key) {
		var ok bool
		if err := a.pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1::int)`, a.finalPID.Load()).Scan(&ok); err != nil || !ok {
			t.Errorf("terminate the final phase's backend: %v %v", ok, err)
		}
	}
	a.afterFinal.Store(&hook)

	lost := a.post("alice", "k", chargeBody)
	if lost.status != http.StatusServiceUnavailable || lost.problemType() != "unavailable" {
		t.Fatalf("first: %d %s; want 503 unavailable", lost.status, lost.body)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys
		WHERE key = 'k' AND recovery_point = 'recorded' AND holder IS NULL AND response_status IS NULL`); n != 1 {
		t.Fatal("the key is not left free at the point before the final phase")
	}
	if got := a.chargeStatus("k"); got != "recorded" {
		t.Fatalf("the charge is %q after its final phase was lost; want recorded", got)
	}
	if seen := a.seenAfterCommit.Load(); seen != nil {
		t.Fatalf("OnCommit ran (saw %q) for a phase that never committed", *seen)
	}
	if n := a.afterTxRuns.Load(); n != 1 {
		t.Fatalf("AfterTx ran %d times for the lost phase, want once (it runs whether the phase committed or not)", n)
	}

	a.afterFinal.Store(nil)
	retry := a.post("alice", "k", chargeBody)
	if retry.status != http.StatusCreated || !retry.charge(t).Recovered || retry.charge(t).Status != "charged" {
		t.Fatalf("retry: %d %s; want 201 rolled forward", retry.status, retry.body)
	}
	if calls, charges := a.bank.counts(); calls != 2 || charges != 1 {
		t.Fatalf("bank: %d calls, %d charges; want the call repeated with its key (2) and one charge", calls, charges)
	}
	if r := a.post("alice", "k", chargeBody); r.body != retry.body || r.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("replay: %d %s", r.status, r.body)
	}
}

// TestServerErrorAfterTheFinalPhaseKeepsIt: a 5xx after the final phase
// (not an answer to store) commits the phase's work without a response:
// the key is free at the phase's point, and the retry answers from there
// without calling the bank again.
func TestServerErrorAfterTheFinalPhaseKeepsIt(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.final.Store(true)
	a.failAfterFinal.Store(true)
	failed := a.post("alice", "k", chargeBody)
	if failed.status != http.StatusInternalServerError {
		t.Fatalf("first: %d %s", failed.status, failed.body)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys
		WHERE key = 'k' AND recovery_point = 'charged' AND holder IS NULL AND response_status IS NULL`); n != 1 {
		t.Fatal("the key is not left free at the final phase's point")
	}
	if seen := a.seenAfterCommit.Load(); seen == nil || *seen != "charged" {
		t.Fatalf("OnCommit saw %v; want it run after the phase committed", seen)
	}
	a.failAfterFinal.Store(false)
	retry := a.post("alice", "k", chargeBody)
	if retry.status != http.StatusCreated || !retry.charge(t).Recovered {
		t.Fatalf("retry: %d %s", retry.status, retry.body)
	}
	if calls, _ := a.bank.counts(); calls != 1 {
		t.Fatalf("the bank was called %d times; the final phase was kept, so once", calls)
	}
}

// TestRefusalAfterTheFinalPhaseIsStored: a 4xx after the final phase is
// the intent's outcome, stored in the phase's transaction like a 2xx (and
// the middleware does not wait on the key row the open phase holds).
func TestRefusalAfterTheFinalPhaseIsStored(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.final.Store(true)
	a.rejectAfterFinal.Store(true)
	first := a.post("alice", "k", chargeBody)
	second := a.post("alice", "k", chargeBody)
	if first.status != http.StatusConflict || second.status != http.StatusConflict ||
		second.body != first.body || second.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("first %d %s, second %d %s", first.status, first.body, second.status, second.body)
	}
	if keyXmin := a.xmin("idempotency_keys", "k"); keyXmin != *a.finalXact.Load() {
		t.Fatalf("the refusal was stored by transaction %s, the final phase ran in %s", keyXmin, *a.finalXact.Load())
	}
}

// TestRetryRacingTheOpenFinalPhase: a retry that arrives while the first
// attempt's final phase is written but not committed is told the request
// is in flight, at once; it neither waits on the held row nor sees a
// half-done intent. A Phase after the final one is refused.
func TestRetryRacingTheOpenFinalPhase(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.final.Store(true)
	var racing reply
	var phaseErr error
	hook := func(k *Key) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan reply, 1)
		go func() { done <- a.post("alice", "k", chargeBody) }()
		select {
		case racing = <-done:
		case <-ctx.Done():
			t.Error("the racing retry did not answer within 10 s while the final phase was open")
		}
		phaseErr = k.Phase(context.Background(), func(pgx.Tx) (string, error) { return "later", nil })
	}
	a.afterFinal.Store(&hook)
	first := a.post("alice", "k", chargeBody)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if racing.status != http.StatusConflict || racing.problemType() != TypeKeyInFlight {
		t.Fatalf("racing retry: %d %s; want 409 %s", racing.status, racing.body, TypeKeyInFlight)
	}
	if phaseErr == nil {
		t.Fatal("a Phase after the final phase was accepted")
	}
	if calls, _ := a.bank.counts(); calls != 1 {
		t.Fatalf("the bank was called %d times", calls)
	}
}

// TestPanicInsideAPhaseLeavesNothingOpen: a phase's fn that panics after
// it locked the key's row (a bug in a store, say) must not leave its
// transaction open: the middleware's Release would then wait forever on
// the row, on a second connection, and every retry of the key with it.
// After the panic the key is released within the test's deadline, no
// session of the database is idle in a transaction, and the key is free
// for a new attempt. For Phase and FinalPhase.
func TestPanicInsideAPhaseLeavesNothingOpen(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	// A pool of its own, closed only if the test passed: a phase left open
	// by a broken implementation would keep Close waiting for ever, and the
	// test must fail, not hang.
	pool, err := pgxpool.New(context.Background(), a.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			pool.Close()
		}
	})
	store := NewStore(pool, Config{})
	for _, final := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		keyName := "panic-" + strconv.FormatBool(final)
		attempt, err := store.Begin(ctx, "alice", keyName, FingerprintOf("POST", "/v1/charges", nil, []byte(chargeBody)))
		if err != nil || attempt.Key == nil {
			t.Fatalf("claim: %+v %v", attempt, err)
		}
		key := attempt.Key
		phase := key.Phase
		if final {
			phase = key.FinalPhase
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Error("the panic was swallowed")
				}
			}()
			_ = phase(ctx, func(tx pgx.Tx) (string, error) {
				if _, err := tx.Exec(ctx, `INSERT INTO charges (scope, idem_key, amount, currency, status)
					VALUES ('alice', $1, 1, 'EUR', 'recorded')`, keyName); err != nil {
					t.Error(err)
				}
				panic("a bug inside the phase")
			})
		}()
		if err := key.Release(ctx); err != nil {
			t.Fatalf("final %v: release after the panic: %v (the phase's transaction still holds the key's row?)", final, err)
		}
		if n := a.count(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state LIKE 'idle in transaction%'`); n != 0 {
			t.Fatalf("final %v: %d sessions idle in a transaction after the panic", final, n)
		}
		if n := a.count(`SELECT count(*) FROM charges WHERE idem_key = $1`, keyName); n != 0 {
			t.Fatalf("final %v: the panicking phase's write is there", final)
		}
		again, err := store.Begin(ctx, "alice", keyName, FingerprintOf("POST", "/v1/charges", nil, []byte(chargeBody)))
		if err != nil || again.Outcome != Claimed {
			t.Fatalf("final %v: the key after the panic: %+v %v, want claimed afresh", final, again, err)
		}
		cancel()
	}
}

// TestRetryRacingAnOpenFinalPhasePastItsLease: the key's lease from the
// last committed phase has run out while the final phase is still open (a
// process stalled between its last write and its answer). A retry then
// tries to take the key over and waits on the row the open phase holds;
// it must neither run the intent again nor answer before the first attempt
// ends: when the first attempt stores its answer, the retry gets that
// answer, replayed, and the bank was called once.
func TestRetryRacingAnOpenFinalPhasePastItsLease(t *testing.T) {
	a := newApp(t, Config{LockTimeout: time.Microsecond}, Options{})
	a.final.Store(true)
	racing := make(chan reply, 1)
	hook := func(*Key) {
		go func() { racing <- a.post("alice", "k", chargeBody) }()
		// Go on once the retry is waiting on a row lock (it tried to take
		// the key over), as pg_stat_activity shows.
		for deadline := time.Now().Add(10 * time.Second); ; {
			if a.count(`SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`) > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Error("the racing retry never waited on the key's row")
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	a.afterFinal.Store(&hook)
	first := a.post("alice", "k", chargeBody)
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	var r reply
	select {
	case r = <-racing:
	case <-time.After(10 * time.Second):
		t.Fatal("the racing retry did not answer within 10 s of the first attempt's answer")
	}
	if r.status != first.status || r.body != first.body || r.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("racing retry: %d %v %s; want the first answer replayed (%d %s)", r.status, r.header, r.body, first.status, first.body)
	}
	if calls, _ := a.bank.counts(); calls != 1 {
		t.Fatalf("the bank was called %d times, want once", calls)
	}
}
