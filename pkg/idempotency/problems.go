package idempotency

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// Problem types the middleware answers with. Each is documented in
// docs/problems.md; clients branch on them, so they never change meaning.
const (
	// TypeKeyMissing: a POST or PATCH came without an Idempotency-Key (400).
	TypeKeyMissing = "idempotency-key-missing"
	// TypeKeyInvalid: the key is empty, longer than MaxKeyLength, not
	// printable ASCII, or sent more than once (400).
	TypeKeyInvalid = "idempotency-key-invalid"
	// TypeKeyReused: the key was first used with a different request:
	// another method, target (path or query) or body (422).
	TypeKeyReused = "idempotency-key-reused"
	// TypeKeyInFlight: the first request with this key has not finished
	// yet; retry after Retry-After seconds (409).
	TypeKeyInFlight = "idempotency-key-in-flight"
	// TypeKeyExpired: the key is past its retention; its first request was
	// executed and is not executed again, but its response is no longer
	// kept (422). Use a new key only for a new intent.
	TypeKeyExpired = "idempotency-key-expired"
)

// ErrKeyLost is wrapped by the error of Key.Phase (and of the final store of
// the response) when this holder no longer holds the key: its lease expired
// and another request took the key over. Nothing of the failed phase was
// committed. The error is a *Problem with status 409 (in flight), so the
// client is told to retry, and the retry replays whatever the new holder
// stores.
var ErrKeyLost = errors.New("idempotency key was taken over by another holder")

// Problem is an error this package answers a request with: an HTTP status
// and an RFC 9457 problem type. It stands on its own (pkg/ imports nothing
// of the application around it); an application with its own error
// vocabulary adopts it through the methods HTTPStatus, ProblemType,
// ProblemDetail and RetryAfterSeconds, and writes it with its own encoder
// (Options.ErrorWriter).
type Problem struct {
	// Status is the HTTP status of the answer.
	Status int
	// Type names the problem (one of the Type constants, or "unauthorized",
	// "too-large", "invalid", "unavailable").
	Type string
	// Detail is safe to show the client.
	Detail string
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
	// Err is the cause, for logs and errors.Is; never shown.
	Err error
}

// Error implements error.
func (p *Problem) Error() string {
	if p.Err != nil {
		return p.Type + ": " + p.Detail + ": " + p.Err.Error()
	}
	return p.Type + ": " + p.Detail
}

// Unwrap returns the cause.
func (p *Problem) Unwrap() error { return p.Err }

// HTTPStatus returns the status the answer carries.
func (p *Problem) HTTPStatus() int { return p.Status }

// ProblemType returns the problem type's name.
func (p *Problem) ProblemType() string { return p.Type }

// ProblemDetail returns the client-facing explanation.
func (p *Problem) ProblemDetail() string { return p.Detail }

// RetryAfterSeconds returns the advised wait before a retry, or 0.
func (p *Problem) RetryAfterSeconds() int { return p.RetryAfter }

// WriteProblem is the default Options.ErrorWriter: an RFC 9457
// application/problem+json document whose type is the problem's name (a
// relative URI reference), with Retry-After when the error advises one.
// An error that is not a *Problem is answered 500 without its text.
func WriteProblem(_ context.Context, err error, w http.ResponseWriter) {
	var p *Problem
	if !errors.As(err, &p) {
		p = &Problem{Status: http.StatusInternalServerError, Type: "internal", Detail: "internal error"}
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	body, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail,omitempty"`
	}{p.Type, http.StatusText(p.Status), p.Status, p.Detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

func errMissing() error {
	return &Problem{Status: http.StatusBadRequest, Type: TypeKeyMissing,
		Detail: "this request needs an Idempotency-Key header; send a fresh unique value (a UUID) per intent and the same value on every retry"}
}

func errInvalid(why string) error {
	return &Problem{Status: http.StatusBadRequest, Type: TypeKeyInvalid, Detail: "the Idempotency-Key header is invalid: " + why}
}

func errReused() error {
	return &Problem{Status: http.StatusUnprocessableEntity, Type: TypeKeyReused,
		Detail: "this Idempotency-Key was already used with a different request (method, target or body); use a new key for a new request"}
}

func errInFlight(retryAfter int) error {
	return &Problem{Status: http.StatusConflict, Type: TypeKeyInFlight, RetryAfter: retryAfter,
		Detail: "a request with this Idempotency-Key is still being processed; retry later to get its result"}
}

func errLost() error {
	return &Problem{Status: http.StatusConflict, Type: TypeKeyInFlight, RetryAfter: 1, Err: ErrKeyLost,
		Detail: "another attempt with this Idempotency-Key took over this request; retry later to get its result"}
}

func errExpired() error {
	return &Problem{Status: http.StatusUnprocessableEntity, Type: TypeKeyExpired,
		Detail: "this Idempotency-Key is past its retention period: its request was already executed and is not executed again; its response is no longer available"}
}

func errUnauthorized(cause error) error {
	return &Problem{Status: http.StatusUnauthorized, Type: "unauthorized", Detail: "the caller could not be identified", Err: cause}
}

// errUnavailable answers a request the store could not take (its database
// is away): nothing was recorded, so the same key may be sent again, after
// Retry-After.
func errUnavailable(detail string, cause error) error {
	return &Problem{Status: http.StatusServiceUnavailable, Type: "unavailable", RetryAfter: 1, Detail: detail, Err: cause}
}
