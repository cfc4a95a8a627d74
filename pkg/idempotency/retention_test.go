package idempotency

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRetention: a key past retention is refused with 422
// idempotency-key-expired (not executed again); cleanup drops its response
// but keeps the tombstone, which still refuses it; after the tombstone
// period cleanup deletes the key. Time is moved in SQL, not waited for.
func TestRetention(t *testing.T) {
	a := newApp(t, Config{Retention: time.Hour, TombstonePeriod: 48 * time.Hour}, Options{})
	first := a.post("alice", "old", chargeBody)
	fresh := a.post("alice", "fresh", chargeBody)
	if first.status != http.StatusCreated || fresh.status != http.StatusCreated {
		t.Fatalf("setup: %d %d", first.status, fresh.status)
	}
	expires, err := http.ParseTime(first.header.Get(ExpiresHeader))
	if err != nil || time.Until(expires) < 59*time.Minute || time.Until(expires) > 61*time.Minute {
		t.Fatalf("%s = %q (%v), want about an hour from now", ExpiresHeader, first.header.Get(ExpiresHeader), err)
	}

	a.exec(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`)
	refused := a.post("alice", "old", chargeBody)
	if refused.status != http.StatusUnprocessableEntity || refused.problemType() != TypeKeyExpired {
		t.Fatalf("retry after retention: %d %s, want 422 %s", refused.status, refused.body, TypeKeyExpired)
	}

	deleted, err := a.store.DeleteExpired(t.Context())
	if err != nil || deleted != 0 {
		t.Fatalf("DeleteExpired inside the tombstone period = %d, %v; want 0", deleted, err)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys WHERE key = 'old' AND response_body IS NULL AND response_headers IS NULL`); n != 1 {
		t.Fatal("the expired key was not reduced to a tombstone")
	}
	if r := a.post("alice", "old", chargeBody); r.problemType() != TypeKeyExpired {
		t.Fatalf("retry against the tombstone: %d %s", r.status, r.body)
	}

	a.exec(`UPDATE idempotency_keys SET expires_at = now() - interval '49 hours' WHERE key = 'old'`)
	deleted, err = a.store.DeleteExpired(t.Context())
	if err != nil || deleted != 1 {
		t.Fatalf("DeleteExpired after the tombstone period = %d, %v; want 1", deleted, err)
	}
	if n := a.count(`SELECT count(*) FROM idempotency_keys WHERE key = 'old'`); n != 0 {
		t.Fatal("the tombstone survived")
	}
	if r := a.post("alice", "fresh", chargeBody); r.body != fresh.body || r.header.Get(ReplayedHeader) != "true" {
		t.Fatalf("cleanup touched a live key: %d %s", r.status, r.body)
	}
	if rows := a.count(`SELECT count(*) FROM charges`); rows != 2 {
		t.Fatalf("%d charges, want 2: an expired key was executed again", rows)
	}
}

// TestRunCleanup: the loop deletes what is due and stops with its context.
func TestRunCleanup(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	a.post("alice", "k", chargeBody)
	a.exec(`UPDATE idempotency_keys SET expires_at = now() - interval '30 days'`)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- a.store.RunCleanup(ctx, time.Millisecond) }()
	// Wait on the condition: the row disappears.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for a.count(`SELECT count(*) FROM idempotency_keys`) != 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("RunCleanup did not delete the expired key")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("RunCleanup returned %v", err)
	}
}

// TestSchemaIsIdempotentAndCopied: Schema can run twice, and each
// service's migration carries it verbatim.
func TestSchemaIsIdempotentAndCopied(t *testing.T) {
	a := newApp(t, Config{}, Options{})
	if err := a.store.CreateSchema(t.Context()); err != nil {
		t.Fatalf("second CreateSchema: %v", err)
	}
	for _, service := range []string{"orders", "payments"} {
		b, err := os.ReadFile("../../migrations/" + service + "/00002_idempotency_keys.sql")
		if err != nil {
			t.Fatal(err)
		}
		up, _, _ := strings.Cut(string(b), "-- +goose Down")
		if !strings.Contains(up, Schema) {
			t.Errorf("migrations/%s/00002_idempotency_keys.sql does not contain pkg/idempotency/schema.sql verbatim", service)
		}
	}
}
