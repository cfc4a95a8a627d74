package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/services/orders"
)

var _ orders.ReconcileStore = (*Store)(nil)

// StalePendingOrders implements orders.ReconcileStore. Claiming and
// stamping in one statement (FOR UPDATE SKIP LOCKED) lets several orders
// instances sweep at once without looking at the same order twice.
func (s *Store) StalePendingOrders(ctx context.Context, olderThan time.Duration, limit int) ([]orders.Order, error) {
	rows, err := s.pool.Query(ctx, `
		UPDATE orders SET reconciled_at = now()
		WHERE id IN (
			SELECT id FROM orders
			WHERE status = 'pending_payment'
			  AND coalesce(reconciled_at, created_at) < now() - $1::interval
			ORDER BY coalesce(reconciled_at, created_at)
			LIMIT $2
			FOR UPDATE SKIP LOCKED)
		RETURNING `+orderColumns, olderThan, limit)
	if err != nil {
		return nil, unavailable(fmt.Errorf("stale pending orders: %w", err))
	}
	defer rows.Close()
	var out []orders.Order
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, unavailable(fmt.Errorf("stale pending orders: %w", err))
		}
		out = append(out, o)
	}
	return out, unavailable(rows.Err())
}

// ReemitOrderCreated implements orders.ReconcileStore.
func (s *Store) ReemitOrderCreated(ctx context.Context, ev events.OrderCreatedEvent) (bool, error) {
	wrote := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var waiting bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox
			WHERE subject = $1 AND payload->>'event_id' = $2 AND published_at IS NULL AND parked_at IS NULL)`,
			events.OrderCreated, ev.EventID).Scan(&waiting); err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		if waiting {
			return nil // the relay has not published it yet: nothing was lost
		}
		// A new row id is a new Nats-Msg-Id, past JetStream's duplicate
		// window; payments recognises the order by its derived payment id.
		if err := outbox.Write(ctx, tx, s.propagator, events.OrderCreated, uuid.NewString(), ev); err != nil {
			return err
		}
		wrote = true
		return nil
	})
	if err != nil {
		return false, unavailable(fmt.Errorf("re-emit orders.created %s: %w", ev.OrderID, err))
	}
	if wrote {
		s.OnOutboxWrite()
	}
	return wrote, nil
}
