package quota

import (
	"context"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/errs"
)

func TestTokenBucketAndDailyKeys(t *testing.T) {
	now := time.Date(2026, 12, 2, 23, 59, 0, 0, time.UTC)
	l := New(Limits{Rate: 2, Burst: 3, KeysPerDay: 4}, func(context.Context) (string, bool) { return "", false })
	l.now = func() time.Time { return now }
	for i := range 3 {
		if err := l.Allow("a", ""); err != nil {
			t.Fatalf("request %d of the burst refused: %v", i, err)
		}
	}
	err := l.Allow("a", "")
	if e := errs.As(err); e == nil || e.Kind != errs.RateLimited || e.RetryAfterSeconds != 1 {
		t.Fatalf("4th request: %v, want 429 with Retry-After 1", err)
	}
	if err := l.Allow("b", ""); err != nil {
		t.Fatalf("another caller is limited by a's bucket: %v", err)
	}
	now = now.Add(500 * time.Millisecond) // one token back at 2/s
	if err := l.Allow("a", ""); err != nil {
		t.Fatalf("after a refill: %v", err)
	}

	// Keys: retries of a key are free; a fifth new key waits for midnight.
	k := New(Limits{KeysPerDay: 2}, nil)
	k.now = func() time.Time { return now }
	for _, key := range []string{"k1", "k1", "k2", "k1", "k2"} {
		if err := k.Allow("a", key); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	err = k.Allow("a", "k3")
	if e := errs.As(err); e == nil || e.Kind != errs.RateLimited || e.RetryAfterSeconds != 60 {
		t.Fatalf("third key: %v, want 429 until midnight (60 s)", err)
	}
	now = now.Add(2 * time.Minute)
	if err := k.Allow("a", "k3"); err != nil {
		t.Fatalf("the next day: %v", err)
	}
}
