package lock

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"
)

// FenceSchema is the DDL of the fence_tokens table (CREATE TABLE IF NOT
// EXISTS, so it can run again); include it in each service's migrations.
//
//go:embed fence.sql
var FenceSchema string

// ErrStaleToken means a write carried a fencing token lower than one the
// resource has already seen: the writer's lease has ended and a newer holder
// has written. The transaction must be rolled back.
var ErrStaleToken = errors.New("lock: stale fencing token")

// FenceToken is everything a write under a lease presents to the fence.
type FenceToken struct {
	// Epoch is the coordinator cluster's epoch (fixed at its bootstrap).
	Epoch uint64
	// Token is the grant's fencing token, increasing within an epoch.
	Token uint64
	// LeaseID names the lease; an equal (Epoch, Token) passes the fence
	// only with the lease id recorded with it.
	LeaseID string
}

// fenceSQL raises the resource's (epoch, token) in one atomic statement.
// The WHERE on the conflict branch leaves the row untouched for a lower
// pair, or an equal pair under another lease, so RETURNING yields no row
// and the write is refused. The row lock it takes lasts until the
// transaction ends, so a newer holder's fence waits for an older holder's
// transaction in flight, and writes apply in token order.
const fenceSQL = `
INSERT INTO fence_tokens (resource, epoch, token, lease_id) VALUES ($1, $2, $3, $4)
ON CONFLICT (resource) DO UPDATE
SET epoch = EXCLUDED.epoch, token = EXCLUDED.token, lease_id = EXCLUDED.lease_id, updated_at = now()
WHERE (fence_tokens.epoch, fence_tokens.token) < (EXCLUDED.epoch, EXCLUDED.token)
   OR (fence_tokens.epoch, fence_tokens.token, fence_tokens.lease_id) = (EXCLUDED.epoch, EXCLUDED.token, EXCLUDED.lease_id)
RETURNING token`

// FenceLease checks t against the highest (epoch, token) seen for
// resource, inside tx, and records it with t's lease. Call it first in the
// transaction that makes the write the lock protects; if it returns
// ErrStaleToken, roll back. The lease's own writes pass again and again;
// an equal token under another lease (two grants that should never share a
// token, e.g. a cluster that lost a committed grant) is refused.
func FenceLease(ctx context.Context, tx pgx.Tx, resource string, t FenceToken) error {
	if t.Token == 0 || t.Token > math.MaxInt64 || t.Epoch > math.MaxInt64 {
		return fmt.Errorf("fence %s: token %d (epoch %d) out of range", resource, t.Token, t.Epoch)
	}
	var got int64
	err := tx.QueryRow(ctx, fenceSQL, resource, int64(t.Epoch), int64(t.Token), t.LeaseID).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("fence %s with token %d (epoch %d): %w", resource, t.Token, t.Epoch, ErrStaleToken)
	}
	if err != nil {
		return fmt.Errorf("fence %s: %w", resource, err)
	}
	return nil
}

// Fence is FenceLease for callers that carry only the token: epoch 0 and no
// lease id, so an equal token always passes and a rebuilt cluster's tokens
// are compared with the old one's. Prefer FenceLease with Lease.FenceToken.
func Fence(ctx context.Context, tx pgx.Tx, resource string, token uint64) error {
	return FenceLease(ctx, tx, resource, FenceToken{Token: token})
}
