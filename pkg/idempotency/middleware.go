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

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// DefaultReplayHeaders are the response headers stored and replayed when
// Options.ReplayHeaders is nil. Only an allow-list is replayed: headers
// such as Date, Set-Cookie or a trace id describe one response, not the
// outcome of the intent.
var DefaultReplayHeaders = []string{"Content-Type", "Location"}

// Options configure the middleware.
type Options struct {
	// Scope names the authenticated caller of r; keys are unique per
	// scope. An error answers 401 (or the error's own kind, if it is an
	// *errs.Error). Required: an unscoped key would let one caller read
	// another's responses by guessing keys.
	Scope func(r *http.Request) (string, error)
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
	return &Middleware{store: store, scope: opts.Scope, replayHeaders: opts.ReplayHeaders,
		waitInFlight: opts.WaitInFlight, obs: obs}, nil
}

// Wrap returns next made idempotent. Mount it inside the route (so that
// r.Pattern names the route in the fingerprint), for example
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
		httpkit.ErrorEncoder(ctx, err, w)
	}
	scope, err := m.scope(r)
	if err != nil {
		if errs.As(err) == nil {
			err = errs.Wrap(errs.Unauthorized, "the caller could not be identified", err)
		}
		refuse("unauthorized", err)
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
			err = errs.Errorf(errs.TooLarge, "request body exceeds the limit of %d bytes", tooBig.Limit)
		} else {
			err = errs.Wrap(errs.Invalid, "could not read request body", err)
		}
		refuse("unreadable", err)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	route := r.Pattern
	if route == "" {
		route = r.URL.Path
	}
	fp := FingerprintOf(r.Method, route, r.URL.Query(), body)

	a, err := m.begin(ctx, scope, key, fp)
	if err != nil {
		httpkit.ErrorEncoder(ctx, errs.Wrap(errs.Unavailable, "the idempotency store is unavailable; retry with the same key", err), w)
		return
	}
	if !a.ExpiresAt.IsZero() && a.Outcome != Expired {
		w.Header().Set(ExpiresHeader, a.ExpiresAt.UTC().Format(http.TimeFormat))
	}
	switch a.Outcome {
	case Expired:
		httpkit.ErrorEncoder(ctx, errExpired(), w)
	case Mismatch:
		httpkit.ErrorEncoder(ctx, errReused(), w)
	case InFlight:
		httpkit.ErrorEncoder(ctx, errInFlight(1), w)
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
			httpkit.ErrorEncoder(ctx, err, w)
			return
		}
		m.obs.failed(ctx, err)
		_ = key.Release(ctx)
		httpkit.ErrorEncoder(ctx, errs.Wrap(errs.Unavailable, "the response could not be stored; retry with the same key", err), w)
		return
	}
	m.obs.completed(ctx, "stored", key)
	rec.writeTo(w)
}

// isFinal says whether a status is the answer to the client's intent and
// is stored for replay. 2xx, 3xx and most 4xx are. 5xx are not: they mean
// "we failed", not "this is the outcome". Nor are 408, 425 and 429, which
// invite the client to retry the same request.
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
