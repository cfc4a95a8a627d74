package httpkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	kithttp "github.com/go-kit/kit/transport/http"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// decodeProblem checks that resp is a valid problem+json document with the
// given status and returns it.
func decodeProblem(t *testing.T, resp *http.Response, wantStatus int) httpkit.Problem {
	t.Helper()
	if resp.StatusCode != wantStatus {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, wantStatus, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != httpkit.ProblemContentType {
		t.Fatalf("Content-Type %q, want %q", ct, httpkit.ProblemContentType)
	}
	var p httpkit.Problem
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("body is not a problem document: %v", err)
	}
	if p.Status != wantStatus {
		t.Errorf("problem status %d, want %d", p.Status, wantStatus)
	}
	if !strings.HasPrefix(p.Type, httpkit.ProblemTypeBase) {
		t.Errorf("problem type %q does not start with %q", p.Type, httpkit.ProblemTypeBase)
	}
	if p.Title == "" {
		t.Error("problem has no title")
	}
	return p
}

func TestErrorEncoderMapsEveryKind(t *testing.T) {
	want := map[errs.Kind]int{
		errs.Internal:      500,
		errs.Invalid:       400,
		errs.Unauthorized:  401,
		errs.Forbidden:     403,
		errs.NotFound:      404,
		errs.Conflict:      409,
		errs.TooLarge:      413,
		errs.Unprocessable: 422,
		errs.Unavailable:   503,
		errs.RateLimited:   429,
	}
	if len(want) != len(errs.Kinds()) {
		t.Fatalf("test covers %d kinds, errs defines %d", len(want), len(errs.Kinds()))
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "request")
	defer span.End()
	traceID := span.SpanContext().TraceID().String()

	for _, kind := range errs.Kinds() {
		t.Run(kind.String(), func(t *testing.T) {
			rec := httptest.NewRecorder()
			httpkit.ErrorEncoder(ctx, errs.E(kind, "the detail"), rec)
			p := decodeProblem(t, rec.Result(), want[kind])
			if p.Type != httpkit.ProblemTypeBase+kind.String() {
				t.Errorf("type %q, want %q", p.Type, httpkit.ProblemTypeBase+kind.String())
			}
			if p.TraceID != traceID {
				t.Errorf("trace_id %q, want %q", p.TraceID, traceID)
			}
			if kind == errs.Internal {
				if strings.Contains(p.Detail, "the detail") {
					t.Errorf("internal detail leaked to the client: %q", p.Detail)
				}
			} else if p.Detail != "the detail" {
				t.Errorf("detail %q, want %q", p.Detail, "the detail")
			}
		})
	}

	t.Run("unclassified error is internal and hides its cause", func(t *testing.T) {
		rec := httptest.NewRecorder()
		httpkit.ErrorEncoder(ctx, errors.New("pq: password authentication failed for user admin"), rec)
		p := decodeProblem(t, rec.Result(), 500)
		if strings.Contains(p.Detail, "password") {
			t.Errorf("cause leaked: %q", p.Detail)
		}
	})

	t.Run("specific type, fields and Retry-After", func(t *testing.T) {
		rec := httptest.NewRecorder()
		err := errs.E(errs.Conflict, "a request with this key is in flight").
			WithType("idempotency-key-in-flight").WithRetryAfter(2)
		httpkit.ErrorEncoder(ctx, err, rec)
		resp := rec.Result()
		if got := resp.Header.Get("Retry-After"); got != "2" {
			t.Errorf("Retry-After %q, want 2", got)
		}
		p := decodeProblem(t, resp, 409)
		if p.Type != httpkit.ProblemTypeBase+"idempotency-key-in-flight" {
			t.Errorf("type %q", p.Type)
		}
	})
}

type echoRequest struct {
	Name   string `json:"name"`
	Amount int64  `json:"amount"`
}

// newEchoServer serves POST /echo through go-kit with the shared options,
// the way every payonce service mounts its endpoints.
func newEchoServer(t *testing.T, maxBody int64) *httptest.Server {
	t.Helper()
	echo := func(_ context.Context, req any) (any, error) {
		r := req.(echoRequest)
		if r.Amount <= 0 {
			return nil, errs.E(errs.Invalid, "amount must be positive").
				WithFields(errs.FieldError{Field: "amount", Reason: "must be > 0"})
		}
		return httpkit.Created{Body: r, Location: "/echo/1"}, nil
	}
	decode := func(_ context.Context, r *http.Request) (any, error) {
		var req echoRequest
		err := httpkit.DecodeJSON(r, &req)
		return req, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /echo", kithttp.NewServer(echo, decode, httpkit.EncodeJSON, httpkit.ServerOptions(nil)...))
	mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	srv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: mux, MaxBodyBytes: maxBody}))
	t.Cleanup(srv.Close)
	return srv
}

func TestRequestBodies(t *testing.T) {
	srv := newEchoServer(t, 256)
	cases := []struct {
		name        string
		contentType string
		body        string
		status      int
		problemType string
		field       string
	}{
		{"valid", "application/json", `{"name":"a","amount":5}`, 201, "", ""},
		{"no content type is accepted", "", `{"name":"a","amount":5}`, 201, "", ""},
		{"malformed", "application/json", `{"name":`, 400, "malformed-json", ""},
		{"syntax error", "application/json", `{"name" "a"}`, 400, "malformed-json", ""},
		{"empty", "application/json", ``, 400, "malformed-json", ""},
		{"unknown field", "application/json", `{"name":"a","amount":5,"total":9}`, 400, "malformed-json", "total"},
		{"wrong type", "application/json", `{"name":"a","amount":"5"}`, 400, "malformed-json", "amount"},
		{"float amount", "application/json", `{"name":"a","amount":5.5}`, 400, "malformed-json", "amount"},
		{"array instead of object", "application/json", `[{"name":"a","amount":5}]`, 400, "malformed-json", ""},
		{"null", "application/json", `null`, 400, "malformed-json", ""},
		{"trailing data", "application/json", `{"name":"a","amount":5} {}`, 400, "malformed-json", ""},
		{"not json", "text/plain", `{"name":"a","amount":5}`, 400, "unsupported-media-type", ""},
		{"domain rule", "application/json", `{"name":"a","amount":0}`, 400, "invalid", "amount"},
		{"over the limit", "application/json", `{"name":"` + strings.Repeat("x", 300) + `","amount":5}`, 413, "too-large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/echo", strings.NewReader(tc.body))
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.status == 201 {
				if resp.StatusCode != 201 || resp.Header.Get("Location") != "/echo/1" {
					t.Fatalf("status %d Location %q, want 201 /echo/1", resp.StatusCode, resp.Header.Get("Location"))
				}
				var got echoRequest
				if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Amount != 5 {
					t.Fatalf("echo body %+v, %v", got, err)
				}
				return
			}
			p := decodeProblem(t, resp, tc.status)
			if p.Type != httpkit.ProblemTypeBase+tc.problemType {
				t.Errorf("type %q, want %q", p.Type, httpkit.ProblemTypeBase+tc.problemType)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Errorf("errors %+v, want one naming %q", p.Errors, tc.field)
			}
		})
	}

	t.Run("chunked body over the limit", func(t *testing.T) {
		// No Content-Length: the limit must still hold while reading.
		body := io.MultiReader(strings.NewReader(`{"name":"`), strings.NewReader(strings.Repeat("x", 1000)), strings.NewReader(`","amount":5}`))
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/echo", body)
		req.ContentLength = -1
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeProblem(t, resp, 413)
	})

	t.Run("panic becomes a 500 problem", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/panic")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeProblem(t, resp, 500)
	})
}

func TestProbes(t *testing.T) {
	var dbErr error
	h := httpkit.Router(httpkit.RouterConfig{
		API:    http.NotFoundHandler(),
		Checks: []httpkit.Check{{Name: "postgres", Probe: func(context.Context) error { return dbErr }}},
	})
	get := func(path string) *http.Response {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Result()
	}
	if resp := get("/healthz"); resp.StatusCode != 200 {
		t.Fatalf("/healthz %d", resp.StatusCode)
	}
	if resp := get("/readyz"); resp.StatusCode != 200 {
		t.Fatalf("/readyz with healthy deps %d", resp.StatusCode)
	}
	dbErr = errors.New("connection refused")
	p := decodeProblem(t, get("/readyz"), 503)
	if p.Checks["postgres"] != "connection refused" {
		t.Fatalf("checks %v, want postgres: connection refused", p.Checks)
	}
	// Liveness does not depend on dependencies.
	if resp := get("/healthz"); resp.StatusCode != 200 {
		t.Fatalf("/healthz with a failing dependency %d", resp.StatusCode)
	}
}

// FuzzDecodeJSON feeds arbitrary bodies to the decoder every endpoint uses:
// it must never panic, and anything it accepts must be a single JSON object
// with only known fields.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"name":"a","amount":5}`, `{`, `[]`, `null`, `{"amount":1e400}`, `{"name":"\ud800"}`, `{} {}`, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var v echoRequest
		err := httpkit.DecodeJSONBytes(body, &v)
		if err == nil {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil || m == nil {
				t.Fatalf("accepted %q, which is not a JSON object (%v)", body, err)
			}
			for k := range m {
				// encoding/json matches field names case-insensitively.
				if !strings.EqualFold(k, "name") && !strings.EqualFold(k, "amount") {
					t.Fatalf("accepted unknown field %q in %q", k, body)
				}
			}
			return
		}
		if k := errs.KindOf(err); k != errs.Invalid {
			t.Fatalf("error kind %v for %q, want invalid", k, body)
		}
	})
}

// TestOddJSONIsRefused: valid JSON that Go's decoder would quietly accept
// (invalid UTF-8, NUL, unpaired surrogates, keys equal up to case, nested
// too) is a 400; ordinary JSON, including equal keys in different objects
// and non-ASCII text, passes.
func TestOddJSONIsRefused(t *testing.T) {
	refused := []string{
		"{\"name\":\"a\xffb\"}",
		`{"name":"a\u0000b"}`,
		`{"name":"\ud800"}`,
		`{"amount":1,"AMOUNT":700}`,
		`{"name":"x","Name":"y"}`,
		`{"lines":[{"sku":"a","SKU":"b"}]}`,
		`{"k":1,"\u212a":2}`, // the Kelvin sign folds to k in encoding/json
		`{"na\u0000me":1}`,
	}
	for _, body := range refused {
		if err := httpkit.CheckJSONText([]byte(body)); errs.KindOf(err) != errs.Invalid {
			t.Errorf("%q: %v, want a 400", body, err)
		}
	}
	accepted := []string{
		`{"name":"Zoë ☕","amount":5}`,
		`{"a":{"x":1},"b":{"x":2}}`,
		`{"lines":[{"sku":"a"},{"sku":"b"}]}`,
		`{"a":[{"a":1}],"b":"a"}`,
	}
	for _, body := range accepted {
		if err := httpkit.CheckJSONText([]byte(body)); err != nil {
			t.Errorf("%q refused: %v", body, err)
		}
	}
}

// FuzzCheckJSONText: the odd-JSON check never panics, and whatever it
// accepts is UTF-8 whose decoded strings hold no NUL and whose objects
// have no two keys equal up to case.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{`{"a":1,"A":2}`, `{"a":"\u0000"}`, `{"a":[{"b":1,"B":1}]}`, `[`, `{"a":"\udc00"}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if httpkit.CheckJSONText(body) != nil {
			return
		}
		var v any
		if json.Unmarshal(body, &v) != nil {
			return // a syntax error is the decoder's to report
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8 %q", body)
		}
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				if strings.ContainsRune(x, 0) {
					t.Fatalf("accepted a NUL in %q", body)
				}
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				seen := map[string]bool{}
				for k, e := range x {
					if strings.ContainsRune(k, 0) {
						t.Fatalf("accepted a NUL key in %q", body)
					}
					l := strings.ToLower(k)
					if seen[l] {
						t.Fatalf("accepted keys equal up to case in %q", body)
					}
					seen[l] = true
					walk(e)
				}
			}
		}
		walk(v)
	})
}
