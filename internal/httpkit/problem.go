package httpkit

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/errs"
)

// ProblemContentType is the media type of RFC 9457 problem details.
const ProblemContentType = "application/problem+json"

// ProblemTypeBase prefixes every problem type URI. The fragment names the
// problem; docs/problems.md documents each one. A fork renames it once here.
const ProblemTypeBase = "https://github.com/payonce/payonce/blob/main/docs/problems.md#"

// Problem is an RFC 9457 problem details document. TraceID is an extension
// member so a client can hand support the one id that finds every span and
// log line of the failed request.
type Problem struct {
	Type    string            `json:"type"`
	Title   string            `json:"title"`
	Status  int               `json:"status"`
	Detail  string            `json:"detail,omitempty"`
	TraceID string            `json:"trace_id,omitempty"`
	Errors  []errs.FieldError `json:"errors,omitempty"`
	// Checks reports per-dependency readiness on /readyz failures.
	Checks map[string]string `json:"checks,omitempty"`
}

// StatusOf maps a kind to its HTTP status. It is the only such mapping in
// payonce: every service's errors reach clients through it.
func StatusOf(kind errs.Kind) int {
	switch kind {
	case errs.Invalid:
		return http.StatusBadRequest
	case errs.Unauthorized:
		return http.StatusUnauthorized
	case errs.Forbidden:
		return http.StatusForbidden
	case errs.NotFound:
		return http.StatusNotFound
	case errs.Conflict:
		return http.StatusConflict
	case errs.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errs.Unprocessable:
		return http.StatusUnprocessableEntity
	case errs.Unavailable:
		return http.StatusServiceUnavailable
	case errs.RateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// ProblemOf builds the problem document for err as seen from ctx. Internal
// errors never reveal their cause: the detail points at the trace instead.
func ProblemOf(ctx context.Context, err error) Problem {
	e := errs.As(err)
	if e == nil {
		e = errs.Wrap(errs.Internal, "", err)
	}
	status := StatusOf(e.Kind)
	p := Problem{
		Type:    ProblemTypeBase + e.Kind.String(),
		Title:   http.StatusText(status),
		Status:  status,
		Detail:  e.Detail,
		TraceID: traceID(ctx),
		Errors:  e.Fields,
	}
	if e.Type != "" {
		p.Type = ProblemTypeBase + e.Type
	}
	if e.Kind == errs.Internal {
		p.Detail = "internal error; quote the trace_id when reporting it"
		p.Errors = nil
	}
	return p
}

// ErrorEncoder writes err as problem+json. It has go-kit's
// transport/http.ErrorEncoder signature so a service passes it straight to
// kithttp.ServerErrorEncoder; plain handlers and middleware call it too.
func ErrorEncoder(ctx context.Context, err error, w http.ResponseWriter) {
	if e := errs.As(err); e != nil && e.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfterSeconds))
	}
	WriteProblem(w, ProblemOf(ctx, err))
}

// WriteProblem writes p with its status and the problem media type.
func WriteProblem(w http.ResponseWriter, p Problem) {
	body, err := json.Marshal(p)
	if err != nil {
		// A Problem holds only strings and ints; this cannot fail, but
		// never leave the client without a status.
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// ErrorHandler logs the errors that are the server's fault (internal and
// unavailable) with their cause; client errors are answered, not logged,
// so a noisy client cannot flood the logs. It implements go-kit's
// transport.ErrorHandler.
type ErrorHandler struct {
	Logger *slog.Logger
}

// Handle logs err if it is the server's fault. A request whose client went
// away (a closed long poll, a timed-out caller) is not a fault.
func (h ErrorHandler) Handle(ctx context.Context, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	switch errs.KindOf(err) {
	case errs.Internal, errs.Unavailable:
		h.Logger.ErrorContext(ctx, "request failed", "kind", errs.KindOf(err).String(), "err", err)
	}
}

func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
