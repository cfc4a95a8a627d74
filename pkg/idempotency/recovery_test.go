package idempotency

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestTakeoverResumesFromRecoveryPoint: a holder records the charge
// (phase 1), calls the bank and then hangs, as if its process died. Once its
// lease has run out, the client's retry takes the key over and resumes at
// "recorded": it does not insert the charge again, it repeats the bank call
// with the same derived key (so the bank charges once) and finishes. The
// old holder, when it wakes, cannot write: its phase 2 fails with
// ErrKeyLost and its answer is not stored.
func TestTakeoverResumesFromRecoveryPoint(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	reached, wake := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func(k *Key) {
		if !k.Resumed() {
			once.Do(func() { close(reached) })
			<-wake
		}
	}
	a.afterBank.Store(&hook)
	original := make(chan reply)
	go func() { original <- a.post("alice", "k", chargeBody) }()
	<-reached

	// The holder is "dead"; its lease ends (moved in SQL, no waiting).
	if n := a.exec(`UPDATE idempotency_keys SET locked_until = now() - interval '1 millisecond'`); n != 1 {
		t.Fatalf("moved %d leases", n)
	}
	abandoned, err := a.store.Abandoned(t.Context(), 10)
	if err != nil || len(abandoned) != 1 || abandoned[0].RecoveryPoint != "recorded" {
		t.Fatalf("Abandoned = %+v, %v; want the key at recorded", abandoned, err)
	}

	retry := a.post("alice", "k", chargeBody)
	if retry.status != http.StatusCreated {
		t.Fatalf("retry: %d %s", retry.status, retry.body)
	}
	c := retry.charge(t)
	if !c.Recovered || c.Status != "charged" {
		t.Fatalf("retry answer %+v, want a recovered, charged charge", c)
	}
	if got := a.phase1Commits.Load(); got != 1 {
		t.Fatalf("phase 1 committed %d times, want 1: the retry started over", got)
	}
	if calls, charges := a.bank.counts(); calls != 2 || charges != 1 {
		t.Fatalf("bank: %d calls, %d charges; want 2 calls (one repeated by the takeover) and 1 charge", calls, charges)
	}
	if got := a.counter("payonce.idempotency.requests", "outcome", "resumed"); got != 1 {
		t.Fatalf("resumed counter = %d", got)
	}

	close(wake)
	old := <-original
	if old.status != http.StatusConflict || old.problemType() != TypeKeyInFlight {
		t.Fatalf("woken holder answered %d %s, want 409 %s", old.status, old.body, TypeKeyInFlight)
	}
	if got := a.counter("payonce.idempotency.completions", "result", "lost"); got != 1 {
		t.Fatalf("lost counter = %d, want 1", got)
	}
	if again := a.post("alice", "k", chargeBody); again.body != retry.body || again.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("replay after takeover: %d %s, want %s", again.status, again.body, retry.body)
	}
	if rows := a.count(`SELECT count(*) FROM charges`); rows != 1 {
		t.Fatalf("%d charges", rows)
	}
}

// TestPhaseFailsForLostHolder checks the fence at the store level: after a
// takeover, the old Key's Phase neither runs fn nor commits, and its
// Complete stores nothing, while the new holder's Phase works.
func TestPhaseFailsForLostHolder(t *testing.T) {
	a := newApp(t, Config{LockTimeout: 1}, Options{}) // 1ns: every lease is already over
	ctx := t.Context()
	fp := FingerprintOf("POST", "/x", nil, []byte(`{}`))
	first, err := a.store.Begin(ctx, "alice", "k", fp)
	if err != nil || first.Outcome != Claimed {
		t.Fatalf("first Begin: %+v %v", first, err)
	}
	second, err := a.store.Begin(ctx, "alice", "k", fp)
	if err != nil || second.Outcome != Resumed || second.Key.RecoveryPoint() != InitialRecoveryPoint {
		t.Fatalf("second Begin: %+v %v, want Resumed at the initial point", second, err)
	}
	ran := false
	err = first.Key.Phase(ctx, func(pgx.Tx) (string, error) { ran = true; return "step", nil })
	if !errors.Is(err, ErrKeyLost) || ran {
		t.Fatalf("old holder's Phase: err %v, fn ran %v; want ErrKeyLost and fn not run", err, ran)
	}
	if err := first.Key.Complete(ctx, Response{Status: 201}); !errors.Is(err, ErrKeyLost) {
		t.Fatalf("old holder's Complete: %v, want ErrKeyLost", err)
	}
	if err := second.Key.Phase(ctx, func(pgx.Tx) (string, error) { return "step", nil }); err != nil {
		t.Fatalf("new holder's Phase: %v", err)
	}
	var point string
	if err := a.pool.QueryRow(ctx, `SELECT recovery_point FROM idempotency_keys`).Scan(&point); err != nil || point != "step" {
		t.Fatalf("recovery point %q %v", point, err)
	}
	for _, bad := range []string{"", InitialRecoveryPoint, finishedRecoveryPoint} {
		if err := second.Key.Phase(ctx, func(pgx.Tx) (string, error) { return bad, nil }); err == nil {
			t.Fatalf("Phase accepted the recovery point %q", bad)
		}
	}
}

// TestPhaseRollsBackWithFn: when fn fails, neither its writes nor a new
// recovery point are committed.
func TestPhaseRollsBackWithFn(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	ctx := t.Context()
	at, err := a.store.Begin(ctx, "alice", "k", FingerprintOf("POST", "/x", nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = at.Key.Phase(ctx, func(tx pgx.Tx) (string, error) {
		if _, err := tx.Exec(ctx, `INSERT INTO charges (scope, idem_key, amount, currency, status) VALUES ('alice','k',1,'EUR','x')`); err != nil {
			return "", err
		}
		return "inserted", boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Phase: %v", err)
	}
	if rows := a.count(`SELECT count(*) FROM charges`); rows != 0 || at.Key.RecoveryPoint() != InitialRecoveryPoint {
		t.Fatalf("after a failed phase: %d rows, point %q", rows, at.Key.RecoveryPoint())
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys WHERE recovery_point = 'started'`); n != 1 {
		t.Fatal("the recovery point moved")
	}
}

// TestServerErrorBeforeSideEffect: a 5xx before any phase is not stored;
// the key is released and the retry runs afresh (claimed, not resumed).
func TestServerErrorBeforeSideEffect(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.failBefore.Store(true)
	failed := a.post("alice", "k", chargeBody)
	if failed.status != http.StatusInternalServerError {
		t.Fatalf("first: %d %s", failed.status, failed.body)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Fatalf("a failure before any side effect left %d key rows", n)
	}
	a.failBefore.Store(false)
	retry := a.post("alice", "k", chargeBody)
	if retry.status != http.StatusCreated || retry.header.Get(ReplayedHeader) != "" || retry.charge(t).Recovered {
		t.Fatalf("retry: %d %s; want a fresh 201", retry.status, retry.body)
	}
	if got := a.counter("payonce.idempotency.requests", "outcome", "claimed"); got != 2 {
		t.Fatalf("claimed %d times, want 2 (the retry is new)", got)
	}
}

// TestServerErrorAfterSideEffect: a 5xx after phase 1 is not stored as the
// answer either; the key stays at "recorded" with no holder, and the retry
// takes it over at once and rolls forward without repeating phase 1.
func TestServerErrorAfterSideEffect(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.failAfter.Store(true)
	failed := a.post("alice", "k", chargeBody)
	if failed.status != http.StatusInternalServerError {
		t.Fatalf("first: %d %s", failed.status, failed.body)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys
		WHERE recovery_point = 'recorded' AND locked_until IS NULL AND response_status IS NULL`); n != 1 {
		t.Fatal("the key is not left unlocked at its recovery point")
	}
	a.failAfter.Store(false)
	retry := a.post("alice", "k", chargeBody)
	if retry.status != http.StatusCreated || !retry.charge(t).Recovered || retry.charge(t).Status != "charged" {
		t.Fatalf("retry: %d %s; want 201 rolled forward", retry.status, retry.body)
	}
	if got := a.phase1Commits.Load(); got != 1 {
		t.Fatalf("phase 1 ran %d times", got)
	}
	if again := a.post("alice", "k", chargeBody); again.body != retry.body || again.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("replay: %s", again.body)
	}
}

// TestClientErrorBeforeAPhaseIsNotStored: a 4xx produced before any phase
// committed (here a validation failure) changed nothing, so it is not
// stored: the same bad request runs again (no replay), and the corrected
// request with the same key runs and is stored.
func TestClientErrorBeforeAPhaseIsNotStored(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	bad := `{"amount": 0, "currency": "EUR"}`
	first := a.post("alice", "k", bad)
	second := a.post("alice", "k", bad)
	if first.status != http.StatusBadRequest || second.status != http.StatusBadRequest || second.header.Get(ReplayedHeader) != "" {
		t.Fatalf("first %d %s, second %d replayed=%q %s", first.status, first.body, second.status, second.header.Get(ReplayedHeader), second.body)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Fatalf("%d key rows after refusals that changed nothing", n)
	}
	fixed := a.post("alice", "k", chargeBody)
	if fixed.status != http.StatusCreated || fixed.header.Get(ReplayedHeader) != "" {
		t.Fatalf("corrected retry: %d %s", fixed.status, fixed.body)
	}
	if r := a.post("alice", "k", chargeBody); r.header.Get(ReplayedHeader) != "true" || r.body != fixed.body {
		t.Fatalf("the corrected answer is not stored: %d %s", r.status, r.body)
	}
}

// TestClientErrorAfterAPhaseIsStored: a 4xx once a phase committed is the
// outcome of the intent (something was recorded), so it is stored and
// replayed like a 2xx.
func TestClientErrorAfterAPhaseIsStored(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.rejectAfter.Store(true)
	first := a.post("alice", "k", chargeBody)
	second := a.post("alice", "k", chargeBody)
	if first.status != http.StatusConflict || second.status != http.StatusConflict ||
		second.body != first.body || second.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("first %d %s, second %d %s", first.status, first.body, second.status, second.body)
	}
	if got := a.phase1Commits.Load(); got != 1 {
		t.Fatalf("phase 1 committed %d times, want 1", got)
	}
}

// TestPanicReleasesKey: a handler that panics is a failure like a 5xx: the
// key is released (here: deleted, no phase ran) and the panic goes on to
// the recovery middleware outside.
func TestPanicReleasesKey(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	h := a.idem.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("handler bug") }))
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, "/x", nil)
	req.Header.Set("Authorization", "Bearer alice")
	req.Header.Set(Header, "k")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		h.ServeHTTP(discard{}, req)
	}()
	if n := a.count(`SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Fatalf("%d key rows after a panic", n)
	}
}

// TestBeginIsAtomic: many concurrent claims of one key at the store level;
// exactly one wins.
func TestBeginIsAtomic(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	fp := FingerprintOf("POST", "/x", nil, []byte(`{"a":1}`))
	const n = 40
	outcomes := make([]Outcome, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			at, err := a.store.Begin(context.Background(), "alice", "k", fp)
			if err != nil {
				t.Error(err)
			}
			outcomes[i] = at.Outcome
		})
	}
	close(start)
	wg.Wait()
	claimed := 0
	for _, o := range outcomes {
		switch o {
		case Claimed:
			claimed++
		case InFlight:
		default:
			t.Fatalf("outcome %q", o)
		}
	}
	if claimed != 1 {
		t.Fatalf("%d claims won, want 1", claimed)
	}
}
