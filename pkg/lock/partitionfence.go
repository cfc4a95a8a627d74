package lock

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// checkFenceSQL passes only while the resource's fence row names exactly
// this lease. FOR SHARE lets every write of the current holder pass side by
// side, and makes a successor's ClaimFence (an UPDATE of the row) wait for
// those writes in flight to commit or roll back; once the successor's claim
// has committed, the row names its lease, and no write of the old holder
// can pass again.
const checkFenceSQL = `
SELECT 1 FROM fence_tokens
WHERE resource = $1 AND epoch = $2 AND token = $3 AND lease_id = $4
FOR SHARE`

// ClaimFence makes t the holder of resource's fence: it is FenceLease, run
// by a new holder once, in a transaction of its own, before its first
// write under the lease. It waits for writes in flight under the previous
// holder (their CheckFence row locks), and it refuses (ErrStaleToken) a
// lease older than the one the row already names.
func ClaimFence(ctx context.Context, tx pgx.Tx, resource string, t FenceToken) error {
	return FenceLease(ctx, tx, resource, t)
}

// CheckFence is the fence for a holder that has claimed resource with
// ClaimFence: it refuses (ErrStaleToken) unless the row still names t's
// lease, without writing the row, so the holder's concurrent writes do not
// queue on it. This is the partition-lease fence: one row per partition,
// claimed once per grant, checked by every write of the partition (see
// docs/fencing-tokens.md).
func CheckFence(ctx context.Context, tx pgx.Tx, resource string, t FenceToken) error {
	if t.Token == 0 || t.Token > math.MaxInt64 || t.Epoch > math.MaxInt64 {
		return fmt.Errorf("fence %s: token %d (epoch %d) out of range", resource, t.Token, t.Epoch)
	}
	var one int
	err := tx.QueryRow(ctx, checkFenceSQL, resource, int64(t.Epoch), int64(t.Token), t.LeaseID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("fence %s with token %d (epoch %d) is not the claimed holder: %w", resource, t.Token, t.Epoch, ErrStaleToken)
	}
	if err != nil {
		return fmt.Errorf("fence %s: %w", resource, err)
	}
	return nil
}
