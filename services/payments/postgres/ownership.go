package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrOwnershipDesignMismatch means the payments database records another
// ownership design than the one this instance runs (see PinOwnershipDesign).
var ErrOwnershipDesignMismatch = errors.New("ownership design mismatch")

// PinOwnershipDesign records design ("partition" or "lock") as the
// ownership design of every payments instance on this database, or checks
// it against the one recorded, and fails with ErrOwnershipDesignMismatch if
// they differ. Each instance calls it before it serves: the two designs
// fence a charge through different fence rows, so instances of both at once
// could each pass their own fence and charge one customer twice. The first
// caller's INSERT wins; of two instances of different designs starting
// together, exactly one starts.
func (s *Store) PinOwnershipDesign(ctx context.Context, design, instance string) error {
	var recorded, by string
	var at time.Time
	var err error
	// A conflicting INSERT waits for a concurrent one to commit, but this
	// statement's snapshot predates that row, so it may see no row at all:
	// then the next statement, with a new snapshot, does.
	for range 3 {
		err = s.pool.QueryRow(ctx, `
		WITH pinned AS (
			INSERT INTO ownership_design (design, recorded_by) VALUES ($1, $2)
			ON CONFLICT (singleton) DO NOTHING
			RETURNING design, recorded_by, recorded_at)
		SELECT design, recorded_by, recorded_at FROM pinned
		UNION ALL
		SELECT design, recorded_by, recorded_at FROM ownership_design
		LIMIT 1`, design, instance).Scan(&recorded, &by, &at)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("record the ownership design: %w", err)
	}
	if recorded != design {
		return fmt.Errorf("%w: the payments database runs PAYMENTS_OWNERSHIP=%s (recorded by %s at %s) and this instance %s: "+
			"the two designs fence a charge through different rows, so running both at once could charge a customer twice; "+
			"start it with PAYMENTS_OWNERSHIP=%s, or switch the whole fleet: stop every payments instance, "+
			"run UPDATE ownership_design SET design = '%s', then start them all with PAYMENTS_OWNERSHIP=%s (docs/payments.md)",
			ErrOwnershipDesignMismatch, recorded, by, at.UTC().Format(time.RFC3339), design, recorded, design, design)
	}
	return nil
}
