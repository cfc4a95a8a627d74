// Package postgres stores payments and refunds in the payments service's
// own PostgreSQL database. Every write of a charge runs in one transaction
// that first passes the fence (pkg/lock.FenceLease) with the writer's token and,
// when the request holds an idempotency key, also advances the key's
// recovery point (pkg/idempotency Key.Phase): the payment's progress, the
// fence and the key's progress commit together or not at all.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"

	"github.com/payonce/payonce/internal/cursor"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/failpoint"
	"github.com/payonce/payonce/internal/outbox"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/payments"
)

// InboxConsumer names the payments service's consumer in the inbox table.
const InboxConsumer = "payments"

// Recovery points recorded on the request's idempotency key.
const (
	pointAuthorizing = "authorizing"
	pointSettled     = "settled"
	pointRefund      = "refund_reserved"
	pointRefunded    = "refund_settled"
)

// Store implements payments.Store.
type Store struct {
	pool       *pgxpool.Pool
	propagator propagation.TextMapPropagator
	// OnOutboxWrite is called after a transaction that wrote an outbox row
	// commits, so the relay can publish at once.
	OnOutboxWrite func()
	// Cursors issues and checks list cursors, bound to caller and customer.
	Cursors cursor.Codec
}

var _ payments.Store = (*Store)(nil)

// NewStore returns a store on pool. prop is used to save trace context with
// outbox events.
func NewStore(pool *pgxpool.Pool, prop propagation.TextMapPropagator) *Store {
	return &Store{pool: pool, propagator: prop, OnOutboxWrite: func() {}}
}

func fence(ctx context.Context, tx pgx.Tx, f payments.Fence) error {
	check := lock.FenceLease
	if f.Claimed {
		check = lock.CheckFence // the partition design: the owner claimed the row at its grant
	}
	if err := check(ctx, tx, f.Resource, lock.FenceToken{Epoch: f.Epoch, Token: f.Token, LeaseID: f.LeaseID}); err != nil {
		if errors.Is(err, lock.ErrStaleToken) {
			countFenced(ctx)          // metrics.go
			recordRefusal(ctx, tx, f) // fencerefusal.go
			return payments.ErrFenced
		}
		return fmt.Errorf("fence %s: %w", f.Resource, err)
	}
	return nil
}

// ClaimPartition makes t's lease the holder of partition's fence row, in a
// transaction of its own: a new owner calls it once per grant, before it
// serves the partition. It waits for the old owner's writes in flight and
// fences out all its later ones; it fails with payments.ErrFenced if a newer
// lease has claimed the row already.
func (s *Store) ClaimPartition(ctx context.Context, partition string, t lock.FenceToken) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return lock.ClaimFence(ctx, tx, partition, t) })
	if errors.Is(err, lock.ErrStaleToken) {
		return payments.ErrFenced
	}
	return err
}

const paymentColumns = `id::text, caller, customer_id, coalesce(order_id, ''), amount, currency, card,
	status, bank_key, coalesce(bank_charge_id, ''), coalesce(failure_reason, ''), refunded_amount, created_at, updated_at`

func scanPayment(row pgx.Row) (payments.Payment, error) {
	var p payments.Payment
	var status string
	err := row.Scan(&p.ID, &p.Caller, &p.CustomerID, &p.OrderID, &p.Amount, &p.Currency, &p.Card,
		&status, &p.BankKey, &p.BankChargeID, &p.FailureReason, &p.RefundedAmount, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, payments.ErrPaymentNotFound
	}
	p.Status = payments.Status(status)
	if len(p.Card) >= 4 {
		p.CardLast4 = p.Card[len(p.Card)-4:]
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, err
}

// CreatePayment implements payments.Store. A new payment's row, inbox row,
// fence check and the key's move to "authorizing" are one commit.
func (s *Store) CreatePayment(ctx context.Context, p payments.Payment, f payments.Fence) (payments.Payment, bool, error) {
	var stored payments.Payment
	created := false
	err := idempotency.Tx(ctx, s.pool, pointAuthorizing, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		if p.SourceEventID != "" {
			if _, err := tx.Exec(ctx, `INSERT INTO inbox (consumer, message_id, subject) VALUES ($1, $2, $3)
				ON CONFLICT DO NOTHING`, InboxConsumer, p.SourceEventID, events.OrderCreated); err != nil {
				return fmt.Errorf("inbox: %w", err)
			}
		}
		var orderID *string
		if p.OrderID != "" {
			orderID = &p.OrderID
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO payments (id, caller, customer_id, order_id, amount, currency, card, status, bank_key, fence_token)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT DO NOTHING`,
			p.ID, p.Caller, p.CustomerID, orderID, p.Amount, p.Currency, p.Card, string(p.Status), p.BankKey, int64(f.Token))
		if err != nil {
			return fmt.Errorf("insert payment: %w", err)
		}
		created = tag.RowsAffected() == 1
		query := `SELECT ` + paymentColumns + ` FROM payments WHERE id = $1`
		args := []any{p.ID}
		if p.OrderID != "" {
			query = `SELECT ` + paymentColumns + ` FROM payments WHERE order_id = $1`
			args = []any{p.OrderID}
		}
		stored, err = scanPayment(tx.QueryRow(ctx, query, args...))
		return err
	})
	return stored, created, err
}

// Payment implements payments.Store.
func (s *Store) Payment(ctx context.Context, id string) (payments.Payment, error) {
	if !cursor.IsUUID(id) {
		return payments.Payment{}, payments.ErrPaymentNotFound
	}
	return scanPayment(s.pool.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
}

// CallerPayment implements payments.Store: the caller is part of the WHERE
// clause, so another caller's payment is not found, like a missing one.
func (s *Store) CallerPayment(ctx context.Context, caller, id string) (payments.Payment, error) {
	if !cursor.IsUUID(id) {
		return payments.Payment{}, payments.ErrPaymentNotFound
	}
	return scanPayment(s.pool.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1 AND caller = $2`, id, caller))
}

// CustomerPayments implements payments.Store with keyset pagination on
// (created_at, id), which stays fast and stable while payments are added,
// on the index payments_by_caller_customer.
func (s *Store) CustomerPayments(ctx context.Context, caller, customerID string, page payments.Page) (payments.PaymentList, error) {
	scope := cursor.Scope(caller, customerID)
	after, afterID, err := s.Cursors.Decode(scope, page.Cursor)
	if err != nil {
		return payments.PaymentList{}, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE caller = $5 AND customer_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
		ORDER BY created_at DESC, id DESC LIMIT $4`, customerID, after, afterID, page.Limit+1, caller)
	if err != nil {
		return payments.PaymentList{}, fmt.Errorf("list payments: %w", err)
	}
	list := payments.PaymentList{}
	list.Payments, list.Next, err = cursor.Collect(rows, page.Limit, scanPayment,
		func(p payments.Payment) (time.Time, string) { return p.CreatedAt, p.ID },
		func(at time.Time, id string) string { return s.Cursors.Encode(scope, at, id) })
	if err != nil {
		return payments.PaymentList{}, err
	}
	return list, nil
}

// MarkAuthorizing implements payments.Store.
func (s *Store) MarkAuthorizing(ctx context.Context, id string, f payments.Fence) (payments.Payment, error) {
	var p payments.Payment
	err := idempotency.Tx(ctx, s.pool, pointAuthorizing, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		var err error
		p, err = scanPayment(tx.QueryRow(ctx, `
			UPDATE payments SET status = CASE WHEN status = 'pending' THEN 'authorizing' ELSE status END,
				fence_token = $2, updated_at = now()
			WHERE id = $1
			RETURNING `+paymentColumns, id, int64(f.Token)))
		return err
	})
	return p, err
}

// AfterWrites implements payments.Store.
func (s *Store) AfterWrites(ctx context.Context, fn func()) { idempotency.AfterTx(ctx, fn) }

// FinishPayment implements payments.Store.
func (s *Store) FinishPayment(ctx context.Context, id string, f payments.Fence, result payments.ChargeResult, ev events.PaymentOutcomeEvent) (payments.Payment, error) {
	var p payments.Payment
	wrote := false
	// The request's last writes: behind the API, the stored response
	// commits with them (idempotency.FinalTx), one flush for both.
	err := idempotency.FinalTx(ctx, s.pool, pointSettled, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		status, chargeID, reason := payments.Succeeded, &result.BankChargeID, (*string)(nil)
		if result.Declined {
			status, chargeID, reason = payments.Failed, nil, &result.DeclineReason
		}
		var err error
		p, err = scanPayment(tx.QueryRow(ctx, `
			UPDATE payments SET status = $2, bank_charge_id = $3, failure_reason = $4, fence_token = $5, updated_at = now()
			WHERE id = $1 AND status IN ('pending', 'authorizing')
			RETURNING `+paymentColumns, id, string(status), chargeID, reason, int64(f.Token)))
		if errors.Is(err, payments.ErrPaymentNotFound) {
			// Already final: another holder finished it. Report that.
			p, err = scanPayment(tx.QueryRow(ctx, `SELECT `+paymentColumns+` FROM payments WHERE id = $1`, id))
			return err
		}
		if err != nil {
			return err
		}
		ev.OccurredAt = p.UpdatedAt
		wrote = true
		return outbox.Write(ctx, tx, s.propagator, ev.Subject(), ev.EventID, ev)
	})
	if err == nil {
		idempotency.OnCommit(ctx, func() {
			if wrote {
				s.OnOutboxWrite()
			}
			failpoint.Hit(payments.FailAfterFinish)
		})
	}
	return p, err
}

// UnfinishedPayments implements payments.Store.
func (s *Store) UnfinishedPayments(ctx context.Context, olderThan time.Duration, limit int) ([]payments.Payment, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE status IN ('pending', 'authorizing') AND updated_at < now() - $1::interval
		ORDER BY updated_at LIMIT $2`, olderThan.String(), limit)
	if err != nil {
		return nil, fmt.Errorf("unfinished payments: %w", err)
	}
	defer rows.Close()
	var out []payments.Payment
	for rows.Next() {
		p, err := scanPayment(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

const refundColumns = `r.id::text, r.payment_id::text, r.amount, p.currency, r.status, coalesce(r.bank_refund_id, ''),
	coalesce(r.failure_reason, ''), r.bank_key, r.created_at, r.updated_at`

func scanRefund(row pgx.Row) (payments.Refund, error) {
	var r payments.Refund
	var status string
	err := row.Scan(&r.ID, &r.PaymentID, &r.Amount, &r.Currency, &status, &r.BankRefundID, &r.FailureReason, &r.BankKey, &r.CreatedAt, &r.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, payments.ErrRefundNotFound
	}
	r.Status = payments.RefundStatus(status)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, err
}

// ReserveRefund implements payments.Store. The reservation and the refund
// row commit together; the payments CHECK constraint refuses a total above
// the captured amount, so two concurrent refunds cannot both overdraw it.
func (s *Store) ReserveRefund(ctx context.Context, r payments.Refund, f payments.Fence) (payments.Refund, error) {
	var stored payments.Refund
	err := idempotency.Tx(ctx, s.pool, pointRefund, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO refunds (id, payment_id, amount, status, bank_key)
			VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (id) DO NOTHING`, r.ID, r.PaymentID, r.Amount, r.BankKey)
		if err != nil {
			return fmt.Errorf("insert refund: %w", err)
		}
		if tag.RowsAffected() == 1 {
			if _, err := tx.Exec(ctx, `UPDATE payments SET refunded_amount = refunded_amount + $2, updated_at = now()
				WHERE id = $1`, r.PaymentID, r.Amount); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "23514" { // check_violation
					return payments.ErrRefundExceedsCaptured
				}
				return fmt.Errorf("reserve refund: %w", err)
			}
		}
		stored, err = scanRefund(tx.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`, r.ID))
		if err == nil && (stored.PaymentID != r.PaymentID || stored.Amount != r.Amount) {
			return errs.E(errs.Conflict, "a different refund already exists for this intent")
		}
		return err
	})
	return stored, err
}

// FinishRefund implements payments.Store.
func (s *Store) FinishRefund(ctx context.Context, id string, f payments.Fence, result payments.RefundResult) (payments.Refund, error) {
	var r payments.Refund
	err := idempotency.FinalTx(ctx, s.pool, pointRefunded, func(tx pgx.Tx) error {
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		status, refundID, reason := payments.RefundSucceeded, &result.BankRefundID, (*string)(nil)
		if result.Refused {
			status, refundID, reason = payments.RefundFailed, nil, &result.Reason
		}
		var paymentID string
		var amount int64
		err := tx.QueryRow(ctx, `UPDATE refunds SET status = $2, bank_refund_id = $3, failure_reason = $4, updated_at = now()
			WHERE id = $1 AND status = 'pending' RETURNING payment_id::text, amount`,
			id, string(status), refundID, reason).Scan(&paymentID, &amount)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// Already final.
		case err != nil:
			return fmt.Errorf("finish refund: %w", err)
		case result.Refused:
			// Give the reservation back.
			if _, err := tx.Exec(ctx, `UPDATE payments SET refunded_amount = refunded_amount - $2, updated_at = now() WHERE id = $1`,
				paymentID, amount); err != nil {
				return fmt.Errorf("release refund reservation: %w", err)
			}
		}
		r, err = scanRefund(tx.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`, id))
		return err
	})
	return r, err
}

// Refund implements payments.Store.
func (s *Store) Refund(ctx context.Context, id string) (payments.Refund, error) {
	if !cursor.IsUUID(id) {
		return payments.Refund{}, payments.ErrRefundNotFound
	}
	return scanRefund(s.pool.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN payments p ON p.id = r.payment_id WHERE r.id = $1`, id))
}

// UnfinishedRefunds implements payments.Store.
func (s *Store) UnfinishedRefunds(ctx context.Context, olderThan time.Duration, limit int) ([]payments.Refund, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.status = 'pending' AND r.updated_at < now() - $1::interval ORDER BY r.updated_at LIMIT $2`, olderThan.String(), limit)
	if err != nil {
		return nil, fmt.Errorf("unfinished refunds: %w", err)
	}
	defer rows.Close()
	var out []payments.Refund
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Ping checks the database for /readyz.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
