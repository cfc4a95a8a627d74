package idempotency

import (
	"context"
	_ "embed"
	"fmt"
)

// Schema is the DDL of the idempotency_keys table. It only creates what does
// not exist yet, so a service can run it at start-up or, better, copy it
// into its own migration history (payonce does, in
// migrations/*/00002_idempotency_keys.sql; a test keeps the copies equal).
//
//go:embed schema.sql
var Schema string

// CreateSchema runs Schema on the store's database. Forks without a
// migration tool call it at start-up; it is a no-op when the table exists.
func (s *Store) CreateSchema(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, Schema); err != nil {
		return fmt.Errorf("create idempotency schema: %w", err)
	}
	return nil
}
