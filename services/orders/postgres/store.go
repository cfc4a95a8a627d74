// Package postgres stores orders in the orders service's own PostgreSQL
// database, with the order's events in the same transaction (outbox) and
// payment outcomes recorded in the inbox before they move an order.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"

	"github.com/payonce/payonce/internal/cursor"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/orders"
)

// InboxConsumer names the orders service's consumer in the inbox table.
const InboxConsumer = "orders"

// ErrOrderNotFound is returned for an unknown order id.
var ErrOrderNotFound = errs.E(errs.NotFound, "order not found")

// Store implements orders.Store.
type Store struct {
	pool       *pgxpool.Pool
	propagator propagation.TextMapPropagator
	// OnOutboxWrite runs after a transaction that wrote an outbox row
	// commits, so the relay publishes at once.
	OnOutboxWrite func()
	// Cursors issues and checks list cursors, bound to caller and customer.
	Cursors cursor.Codec
	// Seal seals the refund requests the store writes, so payments can
	// tell them from forgeries.
	Seal events.SealKey
}

var _ orders.Store = (*Store)(nil)

// NewStore returns a store on pool.
func NewStore(pool *pgxpool.Pool, prop propagation.TextMapPropagator) *Store {
	return &Store{pool: pool, propagator: prop, OnOutboxWrite: func() {}}
}

const orderColumns = `id::text, caller, customer_id, currency, lines, total, status, card,
	coalesce(payment_id, ''), coalesce(failure_reason, ''), created_at, updated_at`

func scanOrder(row pgx.Row) (orders.Order, error) {
	var o orders.Order
	var status string
	var lines []byte
	err := row.Scan(&o.ID, &o.Caller, &o.CustomerID, &o.Currency, &lines, &o.Total, &status, &o.Card,
		&o.PaymentID, &o.FailureReason, &o.CreatedAt, &o.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrOrderNotFound
	}
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(lines, &o.Lines); err != nil {
		return o, fmt.Errorf("order %s lines: %w", o.ID, err)
	}
	o.Status = orders.Status(status)
	o.CreatedAt, o.UpdatedAt = o.CreatedAt.UTC(), o.UpdatedAt.UTC()
	return o, nil
}

// CreateOrder implements orders.Store.
func (s *Store) CreateOrder(ctx context.Context, o orders.Order, ev events.OrderCreatedEvent) (orders.Order, error) {
	var stored orders.Order
	wrote := false
	// The request's last write: the stored response commits with it
	// (idempotency.FinalTx).
	err := idempotency.FinalTx(ctx, s.pool, "order_created", func(tx pgx.Tx) error {
		lines, err := json.Marshal(o.Lines)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO orders (id, caller, customer_id, currency, lines, total, status, card)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
			o.ID, o.Caller, o.CustomerID, o.Currency, lines, o.Total, string(o.Status), o.Card)
		if err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if tag.RowsAffected() == 1 {
			if err := outbox.Write(ctx, tx, s.propagator, events.OrderCreated, ev.EventID, ev); err != nil {
				return err
			}
			wrote = true
		}
		stored, err = scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, o.ID))
		return err
	})
	if err == nil && wrote {
		idempotency.OnCommit(ctx, s.OnOutboxWrite)
	}
	return stored, unavailable(err)
}

// Order implements orders.Store: the caller is part of the WHERE clause,
// so another caller's order is not found, exactly like a missing one.
func (s *Store) Order(ctx context.Context, caller, id string) (orders.Order, error) {
	if !cursor.IsUUID(id) {
		return orders.Order{}, ErrOrderNotFound
	}
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 AND caller = $2`, id, caller))
	return o, unavailable(err)
}

// OrderByID implements orders.Store.
func (s *Store) OrderByID(ctx context.Context, id string) (orders.Order, error) {
	if !cursor.IsUUID(id) {
		return orders.Order{}, ErrOrderNotFound
	}
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id))
	return o, unavailable(err)
}

// CustomerOrders implements orders.Store with keyset pagination on the
// index orders_by_caller_customer.
func (s *Store) CustomerOrders(ctx context.Context, caller, customerID string, page orders.Page) (orders.OrderList, error) {
	scope := cursor.Scope(caller, customerID)
	after, afterID, err := s.Cursors.Decode(scope, page.Cursor)
	if err != nil {
		return orders.OrderList{}, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE caller = $5 AND customer_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $4`, customerID, after, afterID, page.Limit+1, caller)
	if err != nil {
		return orders.OrderList{}, unavailable(fmt.Errorf("list orders: %w", err))
	}
	list := orders.OrderList{}
	list.Orders, list.Next, err = cursor.Collect(rows, page.Limit, scanOrder,
		func(o orders.Order) (time.Time, string) { return o.CreatedAt, o.ID },
		func(at time.Time, id string) string { return s.Cursors.Encode(scope, at, id) })
	if err != nil {
		return orders.OrderList{}, unavailable(err)
	}
	return list, nil
}

// Transition implements orders.Store. Both statements are scoped to the
// caller: another caller's order neither moves nor is shown.
func (s *Store) Transition(ctx context.Context, caller, id string, from, to orders.Status, paymentID, reason string) (orders.Order, bool, error) {
	if !cursor.IsUUID(id) {
		return orders.Order{}, false, ErrOrderNotFound
	}
	var o orders.Order
	moved := false
	err := idempotency.FinalTx(ctx, s.pool, "order_"+string(to), func(tx pgx.Tx) error {
		var err error
		o, err = scanOrder(tx.QueryRow(ctx, `UPDATE orders SET status = $3, payment_id = nullif($4, ''), failure_reason = nullif($5, ''), updated_at = now()
			WHERE id = $1 AND status = $2 AND caller = $6 RETURNING `+orderColumns, id, string(from), string(to), paymentID, reason, caller))
		if err == nil {
			moved = true
			return nil
		}
		if !errors.Is(err, ErrOrderNotFound) {
			return err
		}
		o, err = scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 AND caller = $2`, id, caller))
		return err
	})
	return o, moved, unavailable(err)
}

// ApplyOutcome implements orders.Store: the inbox row and the move commit
// together, so a redelivered outcome finds its inbox row and moves nothing.
func (s *Store) ApplyOutcome(ctx context.Context, ev events.PaymentOutcomeEvent, to orders.Status) (applied, refund bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO inbox (consumer, message_id, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			InboxConsumer, ev.EventID, ev.Subject())
		if err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil // seen before
		}
		if !cursor.IsUUID(ev.OrderID) {
			return nil // not an order of ours; recorded so it is not retried
		}
		tag, err = tx.Exec(ctx, `UPDATE orders SET status = $2, payment_id = $3, failure_reason = nullif($4, ''), updated_at = now()
			WHERE id = $1 AND status = 'pending_payment'`, ev.OrderID, string(to), ev.PaymentID, ev.FailureReason)
		if err != nil {
			return fmt.Errorf("apply payment outcome to order %s: %w", ev.OrderID, err)
		}
		applied = tag.RowsAffected() == 1
		if applied || to != orders.Paid {
			return nil
		}
		refund, err = s.requestRefundIfCancelled(ctx, tx, ev)
		return err
	})
	if err != nil {
		return false, false, unavailable(err)
	}
	if refund {
		s.OnOutboxWrite()
	}
	return applied, refund, nil
}

// requestRefundIfCancelled handles a payment that succeeded for an order
// that is no longer pending: if the customer cancelled it meanwhile, the
// money goes back, through an orders.refund_requested event written in
// the transaction that records the outcome in the inbox, so it is written
// exactly once however often the outcome is delivered.
func (s *Store) requestRefundIfCancelled(ctx context.Context, tx pgx.Tx, ev events.PaymentOutcomeEvent) (bool, error) {
	var status string
	err := tx.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, ev.OrderID).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && orders.Status(status) != orders.Cancelled) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("order %s: %w", ev.OrderID, err)
	}
	rev := events.RefundRequestedEvent{
		// Named after the outcome it answers: one refund request per
		// payment outcome, whatever the retries.
		EventID:    uuid.NewSHA1(refundEventNamespace, []byte(ev.EventID)).String(),
		OrderID:    ev.OrderID,
		PaymentID:  ev.PaymentID,
		Caller:     ev.Caller,
		CustomerID: ev.CustomerID,
		Amount:     ev.Amount,
		Currency:   ev.Currency,
		Reason:     "order cancelled before its payment succeeded",
		OccurredAt: time.Now().UTC(),
	}
	rev = s.Seal.SealRefundRequested(rev)
	if err := outbox.Write(ctx, tx, s.propagator, events.OrderRefundRequested, rev.EventID, rev); err != nil {
		return false, err
	}
	return true, nil
}

// refundEventNamespace roots the name-based ids of refund requests.
var refundEventNamespace = uuid.MustParse("8b6f1d2e-4c1a-4f0e-9a57-2d4c7b9e0f13")

// Ping checks the database for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
