// Package errs defines the one closed set of error kinds that every payonce
// service speaks.
//
// Domain code returns *Error values (or wraps them); exactly one HTTP error
// encoder (internal/httpkit) turns a kind into a status code and an RFC 9457
// problem document. Keeping the set closed means a client can rely on the
// mapping: the same kind always has the same status, whatever service raised it.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies an error by what the caller can do about it.
type Kind uint8

// The closed set of kinds. The zero value is Internal so that an error nobody
// classified is never shown to a client as their fault.
const (
	// Internal is a failure the caller cannot fix; details stay in the logs.
	Internal Kind = iota
	// Invalid means the request is malformed or breaks a rule; retrying it
	// unchanged will fail again.
	Invalid
	// Unauthorized means the caller could not be identified.
	Unauthorized
	// NotFound means the named resource does not exist (for this caller).
	NotFound
	// Conflict means the request clashes with the current state, for example
	// an illegal state transition or a request still in flight.
	Conflict
	// TooLarge means the request body exceeds the configured limit.
	TooLarge
	// Unprocessable means the request is well-formed but cannot be applied,
	// for example an idempotency key reused with a different request.
	Unprocessable
	// Unavailable means a dependency is down or this node cannot serve now;
	// the same request may succeed later.
	Unavailable
	// RateLimited means the caller sent more than its quota allows; the
	// same request will succeed after Retry-After.
	RateLimited
	// Forbidden means the caller was identified and may not do this: it is
	// not the holder of what it names, or asks for more than its identity
	// is allowed. Added last so the other kinds keep their values.
	Forbidden
)

var kindNames = [...]string{
	Internal:      "internal",
	Invalid:       "invalid",
	Unauthorized:  "unauthorized",
	NotFound:      "not-found",
	Conflict:      "conflict",
	TooLarge:      "too-large",
	Unprocessable: "unprocessable",
	Unavailable:   "unavailable",
	RateLimited:   "rate-limited",
	Forbidden:     "forbidden",
}

// Kinds lists every kind, for tests and documentation.
func Kinds() []Kind {
	return []Kind{Internal, Invalid, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Unprocessable, Unavailable, RateLimited}
}

// String returns the kind's stable name, which is also the last segment of
// the problem type URI unless the error names a more specific Type.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is a classified error. Detail is written for the client and must not
// leak internals; Err carries the cause for logs and errors.Is/As.
type Error struct {
	Kind Kind
	// Type, when set, names a more specific problem type than the kind
	// (for example "idempotency-key-reused"); clients branch on it.
	Type string
	// Detail is a human-readable explanation safe to return to the client.
	Detail string
	// Fields lists per-field problems for Invalid errors.
	Fields []FieldError
	// RetryAfterSeconds, when positive, is advertised in a Retry-After header.
	RetryAfterSeconds int
	// Err is the underlying cause, never shown to clients.
	Err error
}

// FieldError names one invalid input field and why it is invalid.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// E builds an error of the given kind with a client-facing detail.
func E(kind Kind, detail string) *Error {
	return &Error{Kind: kind, Detail: detail}
}

// Errorf builds an error of the given kind with a formatted detail. A %w verb
// wraps its operand as the cause.
func Errorf(kind Kind, format string, args ...any) *Error {
	wrapped := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Detail: wrapped.Error(), Err: errors.Unwrap(wrapped)}
}

// Wrap classifies cause as kind with a client-facing detail.
func Wrap(kind Kind, detail string, cause error) *Error {
	return &Error{Kind: kind, Detail: detail, Err: cause}
}

// WithType returns a copy of e with a specific problem type.
func (e *Error) WithType(problemType string) *Error {
	c := *e
	c.Type = problemType
	return &c
}

// WithFields returns a copy of e listing per-field problems.
func (e *Error) WithFields(fields ...FieldError) *Error {
	c := *e
	c.Fields = append(append([]FieldError(nil), e.Fields...), fields...)
	return &c
}

// WithRetryAfter returns a copy of e that advises the client to retry after
// the given number of seconds.
func (e *Error) WithRetryAfter(seconds int) *Error {
	c := *e
	c.RetryAfterSeconds = seconds
	return &c
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil && e.Detail == "" {
		return e.Kind.String() + ": " + e.Err.Error()
	}
	if e.Err != nil {
		return e.Kind.String() + ": " + e.Detail + ": " + e.Err.Error()
	}
	return e.Kind.String() + ": " + e.Detail
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Foreign is an error from a library that must not import this package
// (pkg/idempotency stands alone for forks) but says how it is answered:
// an HTTP status and a problem type. As adopts it into the closed set.
type Foreign interface {
	error
	HTTPStatus() int
	ProblemType() string
	ProblemDetail() string
	RetryAfterSeconds() int
}

// As returns the first *Error in err's chain, or, failing that, the first
// Foreign error adopted as an *Error of the kind its status maps to; nil
// when neither is there.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var f Foreign
	if errors.As(err, &f) {
		return &Error{Kind: kindOfStatus(f.HTTPStatus()), Type: f.ProblemType(), Detail: f.ProblemDetail(),
			RetryAfterSeconds: f.RetryAfterSeconds(), Err: err}
	}
	return nil
}

// kindOfStatus is the inverse of the one status mapping (httpkit.StatusOf).
func kindOfStatus(status int) Kind {
	switch status {
	case 400:
		return Invalid
	case 401:
		return Unauthorized
	case 403:
		return Forbidden
	case 404:
		return NotFound
	case 409:
		return Conflict
	case 413:
		return TooLarge
	case 422:
		return Unprocessable
	case 429:
		return RateLimited
	case 503:
		return Unavailable
	default:
		return Internal
	}
}

// KindOf returns the kind of the first *Error in err's chain, or Internal
// when err is not classified.
func KindOf(err error) Kind {
	if e := As(err); e != nil {
		return e.Kind
	}
	return Internal
}

// Is reports whether err is classified as kind.
func Is(err error, kind Kind) bool {
	return err != nil && KindOf(err) == kind
}
