package postgres

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/services/payments"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestFenceComparesEpochTokenAndLease drives the payments store's fence
// with the writers a broken or rebuilt coordinator could produce, on the
// payments schema as migrated: a second grant under an equal token (a
// cluster that lost a committed grant), an older epoch, a rebuilt cluster
// whose tokens start again at 1. Only the writer the fence should let
// through passes; every other gets payments.ErrFenced.
func TestFenceComparesEpochTokenAndLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	const resource = "customer:shop:alice"
	steps := []struct {
		name string
		f    payments.Fence
		want error
	}{
		{"first grant", payments.Fence{Epoch: 5, Token: 40, LeaseID: "a"}, nil},
		{"the same lease again", payments.Fence{Epoch: 5, Token: 40, LeaseID: "a"}, nil},
		{"an equal token under another lease", payments.Fence{Epoch: 5, Token: 40, LeaseID: "b"}, payments.ErrFenced},
		{"a lower token", payments.Fence{Epoch: 5, Token: 39, LeaseID: "c"}, payments.ErrFenced},
		{"a newer grant", payments.Fence{Epoch: 5, Token: 41, LeaseID: "d"}, nil},
		{"the older lease after it", payments.Fence{Epoch: 5, Token: 40, LeaseID: "a"}, payments.ErrFenced},
		{"a rebuilt cluster, tokens from 1", payments.Fence{Epoch: 6, Token: 1, LeaseID: "e"}, nil},
		{"the old cluster after the rebuild", payments.Fence{Epoch: 5, Token: 99, LeaseID: "f"}, payments.ErrFenced},
	}
	for _, step := range steps {
		step.f.Resource = resource
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = fence(ctx, tx, step.f)
		if !errors.Is(err, step.want) || (step.want == nil && err != nil) {
			_ = tx.Rollback(ctx)
			t.Fatalf("%s (%+v): got %v, want %v", step.name, step.f, err, step.want)
		}
		if err := tx.Commit(ctx); err != nil && step.want == nil {
			t.Fatalf("%s: commit: %v", step.name, err)
		}
	}
}
