package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
)

// TestOwnershipDesignIsPinnedPerDatabase: the first instance records its
// design; instances of the same design start beside it; an instance of the
// other design is refused with an error that names both designs and how to
// switch; after the documented switch (fleet stopped, row updated) the
// other design starts and the first is refused.
func TestOwnershipDesignIsPinnedPerDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	store := NewStore(pool, nil)
	if err := store.PinOwnershipDesign(ctx, "partition", "payments-1"); err != nil {
		t.Fatalf("first instance: %v", err)
	}
	if err := store.PinOwnershipDesign(ctx, "partition", "payments-2"); err != nil {
		t.Fatalf("a second instance of the same design: %v", err)
	}
	err := store.PinOwnershipDesign(ctx, "lock", "payments-3")
	if !errors.Is(err, ErrOwnershipDesignMismatch) {
		t.Fatalf("an instance of the other design: %v, want ErrOwnershipDesignMismatch", err)
	}
	for _, want := range []string{"PAYMENTS_OWNERSHIP=partition", "payments-1", "this instance lock", "UPDATE ownership_design"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	// The switch: every instance stopped, the row updated.
	if _, err := pool.Exec(ctx, `UPDATE ownership_design SET design = 'lock'`); err != nil {
		t.Fatal(err)
	}
	if err := store.PinOwnershipDesign(ctx, "lock", "payments-3"); err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if err := store.PinOwnershipDesign(ctx, "partition", "payments-1"); !errors.Is(err, ErrOwnershipDesignMismatch) {
		t.Fatalf("the old design after the switch: %v, want ErrOwnershipDesignMismatch", err)
	}
}

// TestOwnershipDesignRaceHasOneWinner: instances of both designs starting
// at the same instant on an empty database; every instance of one design
// starts and every instance of the other is refused, whatever the
// interleaving.
func TestOwnershipDesignRaceHasOneWinner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for round := range 5 {
		pool, dbURL := testenv.NewPool(t)
		if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
			t.Fatal(err)
		}
		store := NewStore(pool, nil)
		designs := []string{"partition", "lock", "partition", "lock", "partition", "lock", "partition", "lock"}
		errs := make([]error, len(designs))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, d := range designs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = store.PinOwnershipDesign(ctx, d, d)
			}()
		}
		close(start)
		wg.Wait()
		started := map[string]int{}
		for i, err := range errs {
			switch {
			case err == nil:
				started[designs[i]]++
			case !errors.Is(err, ErrOwnershipDesignMismatch):
				t.Fatalf("round %d, instance %d (%s): %v", round, i, designs[i], err)
			}
		}
		if len(started) != 1 || (started["partition"] != 4 && started["lock"] != 4) {
			t.Fatalf("round %d: started %v, want every instance of exactly one design", round, started)
		}
	}
}
