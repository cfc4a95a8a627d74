package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// app is a small service behind the real middleware on a real database: a
// two-phase "charge" handler of the shape pkg/idempotency is built for.
//
//	started  --phase 1: insert the charge row-->  recorded
//	recorded --call the (fake, keyed) bank, then phase 2: mark it charged-->  charged
//	charged  --read the row and answer 201
//
// The bank is the outside side effect; it dedupes by key, as a real payment
// provider does, and counts every call so tests can see repeats.
type app struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *Store
	idem    *Middleware
	srv     *httptest.Server
	spans   *tracetest.SpanRecorder
	metrics *sdkmetric.ManualReader

	phase1Commits atomic.Int64
	bank          bank

	// failBefore answers 500 before any phase; failAfter answers 500 after
	// phase 1 (a side effect is recorded).
	failBefore, failAfter atomic.Bool
	// rejectAfter answers 409 after phase 1: a refusal once something
	// was recorded.
	rejectAfter atomic.Bool
	// afterBank, when set, runs between the bank call and phase 2; tests
	// block in it to hold a request in flight or to "kill" its holder.
	afterBank atomic.Pointer[func(*Key)]

	// final makes phase 2 the key's FinalPhase (final_test.go): the
	// response is built from the phase's own RETURNING and stored in its
	// transaction. afterFinal, when set, runs between that phase and the
	// response; failAfterFinal answers 500 there, rejectAfterFinal 409.
	final                            atomic.Bool
	afterFinal                       atomic.Pointer[func(*Key)]
	failAfterFinal, rejectAfterFinal atomic.Bool
	// finalXact and finalPID are phase 2's transaction id and backend, as
	// read inside it (final mode).
	finalXact atomic.Pointer[string]
	finalPID  atomic.Int64
	// seenAfterCommit is the charge's status as another connection read
	// it from the handler's OnCommit hook.
	seenAfterCommit atomic.Pointer[string]
	// afterTxRuns counts the handler's AfterTx hook.
	afterTxRuns atomic.Int32
}

type bank struct {
	mu      sync.Mutex
	calls   int
	charges map[string]string // idempotency key -> charge reference
}

func (b *bank) charge(key string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if b.charges == nil {
		b.charges = map[string]string{}
	}
	if ref, ok := b.charges[key]; ok {
		return ref
	}
	ref := fmt.Sprintf("ch_%d", len(b.charges)+1)
	b.charges[key] = ref
	return ref
}

func (b *bank) counts() (calls, charges int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls, len(b.charges)
}

func newApp(t *testing.T, cfg Config, opts Options) *app {
	t.Helper()
	pool, _ := testenv.NewPool(t)
	a := &app{t: t, pool: pool, spans: tracetest.NewSpanRecorder(), metrics: sdkmetric.NewManualReader()}
	a.store = NewStore(pool, cfg)
	if err := a.store.CreateSchema(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.exec(`CREATE TABLE charges (
		id bigserial PRIMARY KEY, scope text NOT NULL, idem_key text NOT NULL,
		amount bigint NOT NULL, currency text NOT NULL, status text NOT NULL, bank_ref text,
		UNIQUE (scope, idem_key))`)
	if opts.Scope == nil {
		opts.Scope = bearerScope
	}
	if opts.ErrorWriter == nil {
		opts.ErrorWriter = httpkit.ErrorEncoder // the application's own problem documents
	}
	opts.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(a.spans))
	opts.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(a.metrics))
	idem, err := NewMiddleware(a.store, opts)
	if err != nil {
		t.Fatal(err)
	}
	a.idem = idem
	mux := http.NewServeMux()
	mux.Handle("POST /v1/charges", idem.Wrap(http.HandlerFunc(a.createCharge)))
	a.srv = httptest.NewServer(httpkit.LimitBody(httpkit.DefaultMaxBodyBytes, mux))
	t.Cleanup(a.srv.Close)
	return a
}

// bearerScope is the caller identity: "Authorization: Bearer <caller>".
func bearerScope(r *http.Request) (string, error) {
	caller, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || caller == "" {
		return "", errors.New("no bearer token")
	}
	return caller, nil
}

type chargeRequest struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

type chargeResponse struct {
	ID        int64  `json:"id"`
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Status    string `json:"status"`
	BankRef   string `json:"bank_ref"`
	Recovered bool   `json:"recovered"`
}

func (a *app) createCharge(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	key := FromContext(ctx)
	fail := func(err error) { httpkit.ErrorEncoder(ctx, err, w) }
	var req chargeRequest
	if err := httpkit.DecodeJSON(r, &req); err != nil {
		fail(err)
		return
	}
	if req.Amount <= 0 {
		fail(errs.E(errs.Invalid, "amount must be positive"))
		return
	}
	if a.failBefore.Load() {
		fail(errors.New("injected failure before any side effect"))
		return
	}
	if key.RecoveryPoint() == InitialRecoveryPoint {
		err := key.Phase(ctx, func(tx pgx.Tx) (string, error) {
			_, err := tx.Exec(ctx, `INSERT INTO charges (scope, idem_key, amount, currency, status)
				VALUES ($1, $2, $3, $4, 'recorded')`, key.Scope(), key.Value(), req.Amount, req.Currency)
			return "recorded", err
		})
		if err != nil {
			fail(err)
			return
		}
		a.phase1Commits.Add(1)
	}
	if a.failAfter.Load() {
		fail(errors.New("injected failure after a side effect"))
		return
	}
	if a.rejectAfter.Load() {
		fail(errs.E(errs.Conflict, "refused after the charge was recorded"))
		return
	}
	if key.RecoveryPoint() == "recorded" && a.final.Load() {
		a.finishInFinalPhase(w, r, key)
		return
	}
	if key.RecoveryPoint() == "recorded" {
		ref := a.bank.charge(key.Derive("bank-charge"))
		if hook := a.afterBank.Load(); hook != nil {
			(*hook)(key)
		}
		err := key.Phase(ctx, func(tx pgx.Tx) (string, error) {
			_, err := tx.Exec(ctx, `UPDATE charges SET status = 'charged', bank_ref = $3
				WHERE scope = $1 AND idem_key = $2`, key.Scope(), key.Value(), ref)
			return "charged", err
		})
		if err != nil {
			fail(err)
			return
		}
	}
	var resp chargeResponse
	err := a.pool.QueryRow(ctx, `SELECT id, amount, currency, status, bank_ref FROM charges
		WHERE scope = $1 AND idem_key = $2`, key.Scope(), key.Value()).
		Scan(&resp.ID, &resp.Amount, &resp.Currency, &resp.Status, &resp.BankRef)
	if err != nil {
		fail(err)
		return
	}
	resp.Recovered = key.Resumed()
	w.Header().Set("X-Not-Replayed", "per-response")
	_ = httpkit.EncodeJSON(ctx, w, httpkit.Created{Body: resp, Location: "/v1/charges/" + strconv.FormatInt(resp.ID, 10)})
}

func (a *app) exec(sql string, args ...any) int64 {
	a.t.Helper()
	tag, err := a.pool.Exec(context.Background(), sql, args...)
	if err != nil {
		a.t.Fatalf("%s: %v", sql, err)
	}
	return tag.RowsAffected()
}

func (a *app) count(sql string, args ...any) int {
	a.t.Helper()
	var n int
	if err := a.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		a.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// reply is a response as a test sees it.
type reply struct {
	status int
	header http.Header
	body   string
}

// problemType returns the fragment of a problem+json type URI.
func (r reply) problemType() string {
	var p httpkit.Problem
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		return ""
	}
	_, frag, _ := strings.Cut(p.Type, "#")
	return frag
}

func (r reply) charge(t testing.TB) chargeResponse {
	t.Helper()
	var c chargeResponse
	if err := json.Unmarshal([]byte(r.body), &c); err != nil {
		t.Fatalf("response %d %q is not a charge: %v", r.status, r.body, err)
	}
	return c
}

// post sends POST /v1/charges as caller (no Authorization when "") with
// key (no Idempotency-Key header when "-") and extra header pairs.
func (a *app) post(caller, key, body string, extra ...string) reply {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.srv.URL+"/v1/charges", strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if caller != "" {
		req.Header.Set("Authorization", "Bearer "+caller)
	}
	if key != "-" {
		req.Header.Add(Header, key)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Add(extra[i], extra[i+1])
	}
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		a.t.Errorf("POST: %v", err)
		return reply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// counter returns the value of a counter of the middleware for one
// attribute value.
func (a *app) counter(name, attr, value string) int64 {
	a.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := a.metrics.Collect(context.Background(), &rm); err != nil {
		a.t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if m.Name != name || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				if v, ok := dp.Attributes.Value(attribute.Key(attr)); ok && v.AsString() == value {
					return dp.Value
				}
			}
		}
	}
	return 0
}
