package postgres

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/lock"
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

// TestStaleHolderCannotRecordAnIntent: a new intent is recorded under the
// fence (the lease is taken first), so a partition's old owner, fenced out
// by its successor's claim, records nothing: no payment row, no inbox row.
// The successor's intent is recorded authorizing, with its token.
func TestStaleHolderCannotRecordAnIntent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	store := NewStore(pool, propagation.TraceContext{})
	const partition = "partition-7"
	old := lock.FenceToken{Epoch: 1, Token: 10, LeaseID: "old"}
	successor := lock.FenceToken{Epoch: 1, Token: 11, LeaseID: "successor"}
	for _, claim := range []lock.FenceToken{old, successor} {
		if err := store.ClaimPartition(ctx, partition, claim); err != nil {
			t.Fatal(err)
		}
	}
	under := func(t lock.FenceToken) payments.Fence {
		return payments.Fence{Resource: partition, Epoch: t.Epoch, Token: t.Token, LeaseID: t.LeaseID, Claimed: true}
	}
	intent := payments.Payment{ID: payments.PaymentIDForOrder("00000000-0000-0000-0000-000000000007"), Caller: "shop",
		CustomerID: "alice", OrderID: "00000000-0000-0000-0000-000000000007", SourceEventID: "order-event-7",
		Amount: 500, Currency: "EUR", Card: "4242424242424242", Status: payments.Authorizing, BankKey: "k-7"}

	if _, _, err := store.CreatePayment(ctx, intent, under(old)); !errors.Is(err, payments.ErrFenced) {
		t.Fatalf("the old owner's intent: %v, want ErrFenced", err)
	}
	var rows, inbox int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payments), (SELECT count(*) FROM inbox)`).Scan(&rows, &inbox); err != nil {
		t.Fatal(err)
	}
	if rows != 0 || inbox != 0 {
		t.Fatalf("the refused intent left %d payment rows and %d inbox rows, want none", rows, inbox)
	}

	p, created, err := store.CreatePayment(ctx, intent, under(successor))
	if err != nil || !created || p.Status != payments.Authorizing {
		t.Fatalf("the successor's intent: %+v created %v, %v; want it recorded authorizing", p, created, err)
	}
	var token int64
	if err := pool.QueryRow(ctx, `SELECT fence_token FROM payments WHERE id = $1`, intent.ID).Scan(&token); err != nil || token != 11 {
		t.Fatalf("the recorded intent's fence token: %d, %v; want 11", token, err)
	}
}
