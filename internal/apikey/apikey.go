// Package apikey authenticates API callers by bearer API key. The caller
// it identifies is also the scope of idempotency keys: two callers sending
// the same Idempotency-Key never see each other's requests.
package apikey

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// Keys maps the SHA-256 of each API key to its caller. Looking up a hash
// rather than the key means the lookup's timing says nothing about how
// much of a guessed key was right.
type Keys struct {
	callers map[[sha256.Size]byte]string
}

// Parse reads "caller:key,caller:key" (for example from an environment
// variable). Callers are names used in logs and as idempotency scopes; keys
// should be long random strings.
func Parse(spec string) (Keys, error) {
	k := Keys{callers: map[[sha256.Size]byte]string{}}
	for _, pair := range strings.Split(spec, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		caller, key, ok := strings.Cut(pair, ":")
		if !ok || !ValidCaller(caller) || len(key) < 16 {
			return Keys{}, fmt.Errorf("API key entry %q: want caller:key, a caller of 1 to 64 letters, digits, '.', '_' or '-', and a key of at least 16 characters", redact(pair))
		}
		h := sha256.Sum256([]byte(key))
		if _, dup := k.callers[h]; dup {
			return Keys{}, fmt.Errorf("API key of caller %q is also another caller's", caller)
		}
		k.callers[h] = caller
	}
	if len(k.callers) == 0 {
		return Keys{}, fmt.Errorf("no API keys configured")
	}
	return k, nil
}

// ValidCaller reports whether name may name a caller: 1 to 64 letters,
// digits, '.', '_' or '-'. A caller is part of every customer's lock name
// ("customer:<caller>:<customer>") and ring key, so it never holds the ":"
// that separates it from the customer, nor anything a lock name refuses.
func ValidCaller(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range []byte(name) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func redact(pair string) string {
	caller, _, _ := strings.Cut(pair, ":")
	return caller + ":…"
}

// CallerOf returns the caller an API key belongs to.
func (k Keys) CallerOf(key string) (string, bool) {
	c, ok := k.callers[sha256.Sum256([]byte(key))]
	return c, ok
}

// Only lets through requests whose authenticated caller is caller, and
// answers others 404 problem+json, as if the route did not exist: internal
// routes are not advertised to API clients.
func Only(caller string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := Caller(r.Context()); !ok || c != caller {
			httpkit.ErrorEncoder(r.Context(), errs.E(errs.NotFound, "no such route"), w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type callerKey struct{}

// Caller returns the authenticated caller of the request ctx belongs to.
func Caller(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(callerKey{}).(string)
	return c, ok
}

// Scope is the idempotency scope of a request: its authenticated caller.
// Pass it as idempotency.Options.Scope, behind Authenticate.
func Scope(r *http.Request) (string, error) {
	caller, ok := Caller(r.Context())
	if !ok {
		return "", errs.E(errs.Unauthorized, "no authenticated caller")
	}
	return caller, nil
}

// WithCaller returns ctx carrying caller, for tests and internal callers.
func WithCaller(ctx context.Context, caller string) context.Context {
	return context.WithValue(ctx, callerKey{}, caller)
}

// Authenticate lets through requests with a valid "Authorization: Bearer
// <key>" and answers the rest with 401 problem+json.
func (k Keys) Authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		caller, ok := "", false
		if strings.EqualFold(scheme, "Bearer") && token != "" {
			caller, ok = k.callers[sha256.Sum256([]byte(strings.TrimSpace(token)))]
		}
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="payonce"`)
			httpkit.ErrorEncoder(r.Context(), errs.E(errs.Unauthorized, "send a valid API key as Authorization: Bearer <key>"), w)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithCaller(r.Context(), caller)))
	})
}

// DevInternalSecret is the default of INTERNAL_SECRET, the secret the
// services share to seal events, sign forwarded requests and bind cursors.
// It is public, like the demo API keys: a deployment sets its own.
const DevInternalSecret = "payonce-dev-internal-secret-change-me"
