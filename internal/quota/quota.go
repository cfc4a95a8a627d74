// Package quota limits how much each API caller may ask of a service: a
// token bucket of requests per second, and a number of distinct
// idempotency keys per UTC day.
//
// It answers 429 problem+json (errs.RateLimited, type "rate-limited") with
// Retry-After, and it sits in front of the idempotency middleware, so a
// refused request never touches its key: the retry with the same key runs
// as if the refused attempt never happened.
//
// The buckets live in the instance's memory. That is cheap (no round trip
// per request) and bounded, at a price stated in docs/security.md: with N
// instances a caller may get up to N times the rate. A fork that needs one
// exact global quota puts the buckets in a shared store instead.
package quota

import (
	"context"
	"hash/fnv"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// Limits are one service's quotas per caller. A zero field disables that
// limit.
type Limits struct {
	// Rate is the sustained requests per second; Burst how many may come
	// at once after a quiet spell.
	Rate  float64
	Burst int
	// KeysPerDay is the number of distinct Idempotency-Key values a caller
	// may use per UTC day (retries of a key do not count again).
	KeysPerDay int
}

// Limiter enforces Limits per caller.
type Limiter struct {
	limits Limits
	caller func(context.Context) (string, bool)
	now    func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	day     string
	keys    map[string]map[uint64]struct{}
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter; caller names the authenticated caller of a
// request (apikey.Caller), so it must run behind authentication.
func New(limits Limits, caller func(context.Context) (string, bool)) *Limiter {
	return &Limiter{limits: limits, caller: caller, now: time.Now,
		buckets: map[string]*bucket{}, keys: map[string]map[uint64]struct{}{}}
}

// Wrap returns next behind the caller's quotas.
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, ok := l.caller(r.Context())
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		if err := l.Allow(caller, r.Header.Get("Idempotency-Key")); err != nil {
			httpkit.ErrorEncoder(r.Context(), err, w)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Allow takes one request of caller (with idempotency key, or "") from its
// quotas, or returns the 429 error that refuses it. A refused request
// takes nothing.
func (l *Limiter) Allow(caller, key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var b *bucket
	if l.limits.Rate > 0 && l.limits.Burst > 0 {
		b = l.buckets[caller]
		if b == nil {
			b = &bucket{tokens: float64(l.limits.Burst), at: now}
			l.buckets[caller] = b
		}
		b.tokens = math.Min(float64(l.limits.Burst), b.tokens+now.Sub(b.at).Seconds()*l.limits.Rate)
		b.at = now
		if b.tokens < 1 {
			wait := int(math.Ceil((1 - b.tokens) / l.limits.Rate))
			return refused("too many requests for this caller; retry after Retry-After seconds", max(wait, 1))
		}
	}
	if l.limits.KeysPerDay > 0 && key != "" {
		day := now.UTC().Format(time.DateOnly)
		if day != l.day {
			l.day, l.keys = day, map[string]map[uint64]struct{}{}
		}
		seen := l.keys[caller]
		if seen == nil {
			seen = map[uint64]struct{}{}
			l.keys[caller] = seen
		}
		h := fnv.New64a()
		h.Write([]byte(key))
		sum := h.Sum64()
		if _, ok := seen[sum]; !ok {
			if len(seen) >= l.limits.KeysPerDay {
				midnight := now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
				return refused("this caller used its idempotency keys for today; retry after Retry-After seconds", max(int(math.Ceil(midnight.Sub(now).Seconds())), 1))
			}
			seen[sum] = struct{}{}
		}
	}
	if b != nil {
		b.tokens-- // only now: a refused request takes nothing
	}
	return nil
}

func refused(detail string, retryAfter int) error {
	return errs.E(errs.RateLimited, detail).WithType("rate-limited").WithRetryAfter(retryAfter)
}
