-- The reconciliation sweeper (services/orders/reconcile.go) stamps each
-- order it looks at, so it comes back to an order only after its age again
-- and goes through every stale order instead of the same oldest ones.

-- +goose Up
ALTER TABLE orders ADD COLUMN reconciled_at timestamptz;
CREATE INDEX orders_pending ON orders (coalesce(reconciled_at, created_at)) WHERE status = 'pending_payment';

-- +goose Down
DROP INDEX orders_pending;
ALTER TABLE orders DROP COLUMN reconciled_at;
