package apikey_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/payonce/payonce/internal/apikey"
)

func TestAuthenticate(t *testing.T) {
	keys, err := apikey.Parse("shop:0123456789abcdef0123, backoffice:fedcba9876543210fedc")
	if err != nil {
		t.Fatal(err)
	}
	var seen string
	h := keys.Authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = apikey.Caller(r.Context())
	}))
	for _, tc := range []struct {
		header string
		status int
		caller string
	}{
		{"Bearer 0123456789abcdef0123", 200, "shop"},
		{"bearer fedcba9876543210fedc", 200, "backoffice"},
		{"Bearer 0123456789abcdef0124", 401, ""},
		{"Basic 0123456789abcdef0123", 401, ""},
		{"", 401, ""},
	} {
		seen = ""
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		h.ServeHTTP(rec, req)
		if rec.Code != tc.status || seen != tc.caller {
			t.Errorf("%q: status %d caller %q, want %d %q", tc.header, rec.Code, seen, tc.status, tc.caller)
		}
		if tc.status == 401 && (rec.Header().Get("WWW-Authenticate") == "" || rec.Header().Get("Content-Type") != "application/problem+json") {
			t.Errorf("%q: 401 without WWW-Authenticate or problem+json", tc.header)
		}
	}
}

func TestParseRefusesBadKeys(t *testing.T) {
	for _, spec := range []string{"", "shop", "shop:short", ":0123456789abcdef0123", "a:0123456789abcdef0123,b:0123456789abcdef0123"} {
		if _, err := apikey.Parse(spec); err == nil {
			t.Errorf("Parse(%q) accepted", spec)
		}
	}
}
