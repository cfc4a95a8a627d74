package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/services/payments"
)

var _ payments.RecoveryStore = (*Store)(nil)

// DuePayments implements payments.RecoveryStore: unfinished payments older
// than olderThan whose next recovery attempt is due and that are not
// parked, the longest-waiting first.
func (s *Store) DuePayments(ctx context.Context, olderThan time.Duration, limit int) ([]payments.Payment, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+paymentColumns+` FROM payments
		WHERE status IN ('pending', 'authorizing') AND recovery_parked_at IS NULL
		  AND updated_at < now() - $1::interval
		  AND (recovery_next_at IS NULL OR recovery_next_at <= now())
		ORDER BY coalesce(recovery_next_at, updated_at) LIMIT $2`, olderThan, limit)
	if err != nil {
		return nil, fmt.Errorf("due payments: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (payments.Payment, error) { return scanPayment(row) })
}

// DueRefunds implements payments.RecoveryStore, like DuePayments.
func (s *Store) DueRefunds(ctx context.Context, olderThan time.Duration, limit int) ([]payments.Refund, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+refundColumns+` FROM refunds r JOIN payments p ON p.id = r.payment_id
		WHERE r.status = 'pending' AND r.recovery_parked_at IS NULL
		  AND r.updated_at < now() - $1::interval
		  AND (r.recovery_next_at IS NULL OR r.recovery_next_at <= now())
		ORDER BY coalesce(r.recovery_next_at, r.updated_at) LIMIT $2`, olderThan, limit)
	if err != nil {
		return nil, fmt.Errorf("due refunds: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (payments.Refund, error) { return scanRefund(row) })
}

func recoveryTable(kind payments.RecoveryKind) (string, error) {
	switch kind {
	case payments.RecoverPayment:
		return "payments", nil
	case payments.RecoverRefund:
		return "refunds", nil
	}
	return "", fmt.Errorf("unknown recovery kind %q", kind)
}

// DeferRecovery implements payments.RecoveryStore: the next attempt waits
// base doubled per failed attempt so far, at most ceiling.
func (s *Store) DeferRecovery(ctx context.Context, kind payments.RecoveryKind, id string, base, ceiling time.Duration) (int, error) {
	table, err := recoveryTable(kind)
	if err != nil {
		return 0, err
	}
	var attempts int
	err = s.pool.QueryRow(ctx, `UPDATE `+table+` SET recovery_attempts = recovery_attempts + 1,
		recovery_next_at = now() + least($3::interval, $2::interval * power(2, least(recovery_attempts, 20)))
		WHERE id = $1 RETURNING recovery_attempts`, id, base, ceiling).Scan(&attempts)
	if err != nil {
		return 0, fmt.Errorf("defer recovery of %s %s: %w", kind, id, err)
	}
	return attempts, nil
}

// ParkRecovery implements payments.RecoveryStore.
func (s *Store) ParkRecovery(ctx context.Context, kind payments.RecoveryKind, id, reason string) error {
	table, err := recoveryTable(kind)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE `+table+` SET recovery_parked_at = now(), recovery_park_reason = $2 WHERE id = $1`, id, reason); err != nil {
		return fmt.Errorf("park %s %s: %w", kind, id, err)
	}
	return nil
}
