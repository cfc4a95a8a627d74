package http

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/errs"
)

// FuzzDecodePaymentBody feeds arbitrary bodies to the create-payment
// decoder: it never panics and refuses only with errs.Invalid.
func FuzzDecodePaymentBody(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c","amount":100,"currency":"EUR","card":"4242424242424242"}`,
		`{"amount":1e309}`, `{"amount":-1}`, `[]`, `{"card":null}`, `{`, ``, `{"customer_id":"\u0000"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_, err := decodePaymentBody(httptest.NewRequest("POST", "/v1/payments", strings.NewReader(body)))
		if err != nil && errs.KindOf(err) != errs.Invalid {
			t.Fatalf("kind %v for %q", errs.KindOf(err), body)
		}
	})
}

// FuzzDecodeRefundBody does the same for refunds.
func FuzzDecodeRefundBody(f *testing.F) {
	for _, s := range []string{`{"amount":100}`, `{"amount":"100"}`, `{"amount":1.5}`, `{}`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_, err := decodeRefundBody(httptest.NewRequest("POST", "/v1/payments/x/refunds", strings.NewReader(body)))
		if err != nil && errs.KindOf(err) != errs.Invalid {
			t.Fatalf("kind %v for %q", errs.KindOf(err), body)
		}
	})
}
