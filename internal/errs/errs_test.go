package errs_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/pkg/idempotency"
)

// TestForeignErrorsAreAdopted: pkg/idempotency's problems (which cannot
// import errs) keep their status, type and Retry-After when they reach
// payonce's one error encoder, even wrapped.
func TestForeignErrorsAreAdopted(t *testing.T) {
	cases := []struct {
		p    *idempotency.Problem
		kind errs.Kind
	}{
		{&idempotency.Problem{Status: http.StatusUnprocessableEntity, Type: idempotency.TypeKeyReused}, errs.Unprocessable},
		{&idempotency.Problem{Status: http.StatusConflict, Type: idempotency.TypeKeyInFlight, RetryAfter: 1}, errs.Conflict},
		{&idempotency.Problem{Status: http.StatusBadRequest, Type: idempotency.TypeKeyMissing}, errs.Invalid},
		{&idempotency.Problem{Status: http.StatusTooManyRequests, Type: "rate-limited", RetryAfter: 3}, errs.RateLimited},
		{&idempotency.Problem{Status: 599, Type: "odd"}, errs.Internal},
	}
	for _, c := range cases {
		e := errs.As(fmt.Errorf("wrapped: %w", c.p))
		if e == nil || e.Kind != c.kind || e.Type != c.p.Type || e.RetryAfterSeconds != c.p.RetryAfter {
			t.Fatalf("%+v adopted as %+v, want kind %v", c.p, e, c.kind)
		}
	}
	if errs.As(fmt.Errorf("plain")) != nil {
		t.Fatal("an unclassified error was adopted")
	}
}
