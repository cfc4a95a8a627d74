package lock_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/pkg/lock"
)

func fencePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, _ := testenv.NewPool(t)
	ctx := context.Background()
	// Twice: the schema must be idempotent to sit in every service's migrations.
	for range 2 {
		if _, err := pool.Exec(ctx, lock.FenceSchema); err != nil {
			t.Fatalf("fence schema: %v", err)
		}
	}
	return pool
}

func fenceIn(ctx context.Context, pool *pgxpool.Pool, resource string, token uint64) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return lock.Fence(ctx, tx, resource, token) })
}

func TestFenceAcceptsRisingTokensAndRejectsLowerOnes(t *testing.T) {
	ctx := context.Background()
	pool := fencePool(t)
	for _, step := range []struct {
		resource string
		token    uint64
		stale    bool
	}{
		{"customer-1", 5, false},
		{"customer-1", 5, false}, // same holder writing again
		{"customer-1", 9, false},
		{"customer-1", 7, true},
		{"customer-1", 1, true},
		{"customer-2", 3, false}, // resources are independent
		{"customer-1", 10, false},
	} {
		err := fenceIn(ctx, pool, step.resource, step.token)
		if step.stale != errors.Is(err, lock.ErrStaleToken) || (!step.stale && err != nil) {
			t.Fatalf("fence %s with %d: %v (stale expected: %v)", step.resource, step.token, err, step.stale)
		}
	}
	var tok int64
	if err := pool.QueryRow(ctx, `SELECT token FROM fence_tokens WHERE resource = 'customer-1'`).Scan(&tok); err != nil || tok != 10 {
		t.Fatalf("recorded token %d, %v; want 10", tok, err)
	}
	if err := fenceIn(ctx, pool, "customer-1", 0); err == nil {
		t.Fatal("token 0 accepted")
	}
}

// TestFenceOrdersByEpochThenTokenAndEqualTokensOnlyForTheSameLease: a
// cluster rebuilt from nothing (a larger epoch, tokens low again) passes the
// fence at once instead of being fenced out until its tokens pass the old
// cluster's; the old cluster's holders are then refused; an equal token
// passes for its own lease only.
func TestFenceOrdersByEpochThenTokenAndEqualTokensOnlyForTheSameLease(t *testing.T) {
	ctx := context.Background()
	pool := fencePool(t)
	in := func(tok lock.FenceToken) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return lock.FenceLease(ctx, tx, "customer-1", tok) })
	}
	for _, step := range []struct {
		name  string
		tok   lock.FenceToken
		stale bool
	}{
		{"old cluster's grant", lock.FenceToken{Epoch: 1000, Token: 900, LeaseID: "a"}, false},
		{"same lease writes again", lock.FenceToken{Epoch: 1000, Token: 900, LeaseID: "a"}, false},
		{"equal token, another lease", lock.FenceToken{Epoch: 1000, Token: 900, LeaseID: "b"}, true},
		{"rebuilt cluster, tokens low again", lock.FenceToken{Epoch: 2000, Token: 3, LeaseID: "c"}, false},
		{"old cluster's later grant", lock.FenceToken{Epoch: 1000, Token: 950, LeaseID: "d"}, true},
		{"lower token in the new epoch", lock.FenceToken{Epoch: 2000, Token: 2, LeaseID: "e"}, true},
		{"next grant in the new epoch", lock.FenceToken{Epoch: 2000, Token: 4, LeaseID: "f"}, false},
	} {
		err := in(step.tok)
		if step.stale != errors.Is(err, lock.ErrStaleToken) || (!step.stale && err != nil) {
			t.Fatalf("%s %+v: %v (stale expected: %v)", step.name, step.tok, err, step.stale)
		}
	}
	var epoch, tok int64
	var lease string
	if err := pool.QueryRow(ctx, `SELECT epoch, token, lease_id FROM fence_tokens WHERE resource = 'customer-1'`).Scan(&epoch, &tok, &lease); err != nil || epoch != 2000 || tok != 4 || lease != "f" {
		t.Fatalf("recorded (%d, %d, %q), %v; want (2000, 4, f)", epoch, tok, lease, err)
	}
}
