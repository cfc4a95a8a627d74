package http

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/errs"
)

// FuzzDecodeOrderBody feeds arbitrary bodies to the create-order decoder:
// it never panics and refuses only with errs.Invalid.
func FuzzDecodeOrderBody(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c","currency":"EUR","card":"4242424242424242","lines":[{"sku":"cup","quantity":2}]}`,
		`{"lines":[{"quantity":1e99}]}`, `{"lines":null}`, `{"total":5}`, `[]`, `{`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		_, err := decodeOrderBody(httptest.NewRequest("POST", "/v1/orders", strings.NewReader(body)))
		if err != nil && errs.KindOf(err) != errs.Invalid {
			t.Fatalf("kind %v for %q", errs.KindOf(err), body)
		}
	})
}

// FuzzCustomerInBody: the routing key reader never panics.
func FuzzCustomerInBody(f *testing.F) {
	f.Add(`{"customer_id":"c-1"}`)
	f.Add(`{"customer_id":5}`)
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/orders", nil)
		r = r.WithContext(apikey.WithCaller(r.Context(), "shop"))
		if key, ok := customerInBody(r, []byte(body)); ok && key == "" {
			t.Fatal("empty key reported as present")
		}
	})
}
