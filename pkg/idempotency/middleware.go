package idempotency

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// DefaultReplayHeaders are the response headers stored and replayed when
// Options.ReplayHeaders is nil. Only an allow-list is replayed: headers
// such as Date, Set-Cookie or a trace id describe one response, not the
// outcome of the intent.
var DefaultReplayHeaders = []string{"Content-Type", "Location"}

// Options configure the middleware.
type Options struct {
	// Scope names the authenticated caller of r; keys are unique per
	// scope. An error answers 401 (a *Problem wrapping it). Required: an
	// unscoped key would let one caller read another's responses by
	// guessing keys.
	Scope func(r *http.Request) (string, error)
	// ErrorWriter answers a refused request. Its errors are *Problem
	// values (see Problem for adopting them into an application's own
	// errors); nil means WriteProblem. It has go-kit's ErrorEncoder shape.
	ErrorWriter func(ctx context.Context, err error, w http.ResponseWriter)
	// ReplayHeaders lists the response headers stored with the response;
	// nil means DefaultReplayHeaders.
	ReplayHeaders []string
	// WaitInFlight, when positive, makes a request whose key is in flight
	// wait up to this long for the first request to finish (and then get
	// its replay) before answering 409. Zero answers 409 at once.
	WaitInFlight time.Duration
	// TracerProvider and MeterProvider default to the OpenTelemetry globals.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
}

// Middleware makes POST and PATCH handlers idempotent with the
// Idempotency-Key header. See the package documentation for the protocol.
type Middleware struct {
	store         *Store
	scope         func(*http.Request) (string, error)
	writeError    func(context.Context, error, http.ResponseWriter)
	replayHeaders []string
	waitInFlight  time.Duration
	obs           observer
	// onWait, set by tests, runs each time a request starts waiting for
	// an in-flight key.
	onWait func()
}

// NewMiddleware returns the middleware on store.
func NewMiddleware(store *Store, opts Options) (*Middleware, error) {
	if store == nil || opts.Scope == nil {
		return nil, errors.New("idempotency: NewMiddleware needs a store and a Scope function")
	}
	if opts.ReplayHeaders == nil {
		opts.ReplayHeaders = DefaultReplayHeaders
	}
	if opts.ErrorWriter == nil {
		opts.ErrorWriter = WriteProblem
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.MeterProvider == nil {
		opts.MeterProvider = otel.GetMeterProvider()
	}
	obs, err := newObserver(opts.TracerProvider, opts.MeterProvider)
	if err != nil {
		return nil, err
	}
	return &Middleware{store: store, scope: opts.Scope, writeError: opts.ErrorWriter, replayHeaders: opts.ReplayHeaders,
		waitInFlight: opts.WaitInFlight, obs: obs}, nil
}

// Wrap returns next made idempotent, for example
//
//	mux.Handle("POST /v1/payments", idem.Wrap(kithttp.NewServer(...)))
//
// Safe methods (GET, HEAD, OPTIONS, TRACE) pass straight through; POST and
// PATCH require a key; PUT and DELETE use one when it is sent.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, next)
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		next.ServeHTTP(w, r)
		return
	}
	refuse := func(outcome string, err error) {
		m.obs.refused(ctx, outcome)
		m.writeError(ctx, err, w)
	}
	scope, err := m.scope(r)
	if err != nil {
		refuse("unauthorized", errUnauthorized(err))
		return
	}
	key, present, err := ParseKey(r.Header)
	switch {
	case err != nil:
		refuse("invalid", err)
		return
	case !present && (r.Method == http.MethodPost || r.Method == http.MethodPatch):
		refuse("missing", errMissing())
		return
	case !present:
		next.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			err = &Problem{Status: http.StatusRequestEntityTooLarge, Type: "too-large",
				Detail: "request body exceeds the limit of " + strconv.FormatInt(tooBig.Limit, 10) + " bytes"}
		} else {
			err = &Problem{Status: http.StatusBadRequest, Type: "invalid", Detail: "could not read request body", Err: err}
		}
		refuse("unreadable", err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	// The concrete target, not the route pattern: cancelling order B with
	// the key that cancelled order A is another request (422), not a
	// replay of A's answer that leaves B untouched.
	fp := FingerprintOf(r.Method, r.URL.EscapedPath(), r.URL.Query(), body)

	a, err := m.begin(ctx, scope, key, fp)
	if err != nil {
		m.writeError(ctx, errUnavailable("the idempotency store is unavailable; retry with the same key", err), w)
		return
	}
	if !a.ExpiresAt.IsZero() && a.Outcome != Expired {
		w.Header().Set(ExpiresHeader, a.ExpiresAt.UTC().Format(http.TimeFormat))
	}
	switch a.Outcome {
	case Expired:
		m.writeError(ctx, errExpired(), w)
	case Mismatch:
		m.writeError(ctx, errReused(), w)
	case InFlight:
		m.writeError(ctx, errInFlight(1), w)
	case Replayed:
		replay(w, a.Response)
	case Claimed, Resumed:
		m.run(w, r.WithContext(NewContext(ctx, a.Key)), next, a.Key)
	}
}

// begin is Store.Begin, traced and counted, with the optional bounded wait
// for an in-flight first request. The wait polls with backoff: a request
// in flight usually finishes within milliseconds, and polling needs no
// notification machinery in the database.
func (m *Middleware) begin(ctx context.Context, scope, key string, fp Fingerprint) (Attempt, error) {
	ctx, span := m.obs.startBegin(ctx, key)
	deadline := time.Now().Add(m.waitInFlight)
	pause := 10 * time.Millisecond
	for {
		a, err := m.store.Begin(ctx, scope, key, fp)
		if err != nil || a.Outcome != InFlight || time.Now().Add(pause).After(deadline) {
			m.obs.endBegin(ctx, span, a, err)
			return a, err
		}
		if m.onWait != nil {
			m.onWait()
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			m.obs.endBegin(ctx, span, a, nil)
			return a, nil
		case <-t.C:
		}
		pause = min(2*pause, 200*time.Millisecond)
	}
}

// run executes the handler as the key's holder and applies the 5xx policy
// to its response, which is buffered so the client never sees an answer
// that was not stored (a replay must be able to return exactly it).
func (m *Middleware) run(w http.ResponseWriter, r *http.Request, next http.Handler, key *Key) {
	// The outcome must be recorded even if the client hung up.
	ctx := context.WithoutCancel(r.Context())
	rec := &recorder{header: http.Header{}}
	finished := false
	defer func() {
		if !finished { // the handler panicked: a failure, like a 5xx
			m.obs.completed(ctx, "released", key)
			_ = key.Release(ctx)
		}
	}()
	next.ServeHTTP(rec, r)
	finished = true

	status := rec.statusOrOK()
	if status >= 400 && status < 500 && isFinal(status) {
		// A refusal before any phase committed (a bad content type, a
		// failed validation, a 404) changed nothing: it is not the outcome
		// of the intent, so the key is freed and the corrected retry runs
		// (Stripe saves no result when validation fails). Whether a phase
		// committed is the database's to say.
		forgotten, err := key.forgetIfUnstarted(ctx)
		if err != nil {
			m.obs.failed(ctx, err)
		}
		if forgotten {
			m.obs.completed(ctx, "released", key)
			rec.writeTo(w)
			return
		}
	}
	if !isFinal(status) {
		// Not an answer to the intent: free the key for the retry, which
		// starts afresh if no phase committed and rolls forward if one did.
		m.obs.completed(ctx, "released", key)
		if err := key.Release(ctx); err != nil {
			// The lease will run out and a retry take over; the client
			// gets the handler's failure either way.
			m.obs.failed(ctx, err)
		}
		rec.writeTo(w)
		return
	}
	stored := Response{Status: status, Header: http.Header{}, Body: rec.body.Bytes()}
	for _, name := range m.replayHeaders {
		if v := rec.header.Values(name); len(v) > 0 {
			stored.Header[http.CanonicalHeaderKey(name)] = v
		}
	}
	if err := key.Complete(ctx, stored); err != nil {
		if errors.Is(err, ErrKeyLost) {
			m.obs.completed(ctx, "lost", key)
			m.writeError(ctx, err, w)
			return
		}
		m.obs.failed(ctx, err)
		_ = key.Release(ctx)
		m.writeError(ctx, errUnavailable("the response could not be stored; retry with the same key", err), w)
		return
	}
	m.obs.completed(ctx, "stored", key)
	rec.writeTo(w)
}

// isFinal says whether a status is the answer to the client's intent and
// is stored for replay. 2xx, 3xx and most 4xx are (a 4xx only once a phase
// committed; see run). 5xx are not: they mean "we failed", not "this is the
// outcome". Nor are 408, 425 and 429, which invite the client to retry the
// same request.
func isFinal(status int) bool {
	switch {
	case status >= 500:
		return false
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return false
	}
	return true
}

func replay(w http.ResponseWriter, resp *Response) {
	for name, values := range resp.Header {
		w.Header()[name] = values
	}
	w.Header().Set(ReplayedHeader, "true")
	w.WriteHeader(resp.Status)
	_, _ = w.Write(resp.Body)
}

// recorder buffers a handler's response.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) statusOrOK() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

func (r *recorder) writeTo(w http.ResponseWriter) {
	for name, values := range r.header {
		w.Header()[name] = values
	}
	if r.body.Len() > 0 && w.Header().Get("Content-Length") == "" {
		w.Header().Set("Content-Length", strconv.Itoa(r.body.Len()))
	}
	w.WriteHeader(r.statusOrOK())
	_, _ = w.Write(r.body.Bytes())
}
