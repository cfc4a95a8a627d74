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

// fenceSQL raises the resource's token in one atomic statement. The WHERE
// on the conflict branch leaves the row untouched for a lower token, so
// RETURNING yields no row and the write is refused. The row lock it takes
// lasts until the transaction ends, so a newer holder's fence waits for an
// older holder's transaction in flight, and writes apply in token order.
const fenceSQL = `
INSERT INTO fence_tokens (resource, token) VALUES ($1, $2)
ON CONFLICT (resource) DO UPDATE SET token = EXCLUDED.token, updated_at = now()
WHERE fence_tokens.token <= EXCLUDED.token
RETURNING token`

// Fence checks token against the highest token seen for resource, inside
// tx, and records it. Call it first in the transaction that makes the write
// the lock protects; if it returns ErrStaleToken, roll back. An equal token
// passes: one holder may write many times under one lease.
func Fence(ctx context.Context, tx pgx.Tx, resource string, token uint64) error {
	if token == 0 || token > math.MaxInt64 {
		return fmt.Errorf("fence %s: token %d out of range", resource, token)
	}
	var got int64
	err := tx.QueryRow(ctx, fenceSQL, resource, int64(token)).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("fence %s with token %d: %w", resource, token, ErrStaleToken)
	}
	if err != nil {
		return fmt.Errorf("fence %s: %w", resource, err)
	}
	return nil
}
