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
