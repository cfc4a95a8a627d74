package idempotency

import (
	"errors"

	"github.com/payonce/payonce/internal/errs"
)

// Problem types the middleware answers with. Each is documented in
// docs/problems.md; clients branch on them, so they never change meaning.
const (
	// TypeKeyMissing: a POST or PATCH came without an Idempotency-Key (400).
	TypeKeyMissing = "idempotency-key-missing"
	// TypeKeyInvalid: the key is empty, longer than MaxKeyLength, not
	// printable ASCII, or sent more than once (400).
	TypeKeyInvalid = "idempotency-key-invalid"
	// TypeKeyReused: the key was first used with a different request (422).
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
// committed. The error is classified as an in-flight conflict, so the
// client is told to retry, and the retry replays whatever the new holder
// stores.
var ErrKeyLost = errors.New("idempotency key was taken over by another holder")

func errMissing() error {
	return errs.E(errs.Invalid, "this request needs an Idempotency-Key header; send a fresh unique value (a UUID) per intent and the same value on every retry").
		WithType(TypeKeyMissing)
}

func errInvalid(why string) error {
	return errs.E(errs.Invalid, "the Idempotency-Key header is invalid: "+why).WithType(TypeKeyInvalid)
}

func errReused() error {
	return errs.E(errs.Unprocessable, "this Idempotency-Key was already used with a different request (method, route or body); use a new key for a new request").
		WithType(TypeKeyReused)
}

func errInFlight(retryAfter int) error {
	return errs.E(errs.Conflict, "a request with this Idempotency-Key is still being processed; retry later to get its result").
		WithType(TypeKeyInFlight).WithRetryAfter(retryAfter)
}

func errLost() error {
	return errs.Wrap(errs.Conflict, "another attempt with this Idempotency-Key took over this request; retry later to get its result", ErrKeyLost).
		WithType(TypeKeyInFlight).WithRetryAfter(1)
}

func errExpired() error {
	return errs.E(errs.Unprocessable, "this Idempotency-Key is past its retention period: its request was already executed and is not executed again; its response is no longer available").
		WithType(TypeKeyExpired)
}
