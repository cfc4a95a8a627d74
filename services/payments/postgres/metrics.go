package postgres

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/payonce/payonce/services/payments"
)

// RegisterMetrics exports what an operator watches in payments' data, read
// from the tables at each scrape:
//
//   - payonce_payments_by_status{status}: payments in each status (every
//     status is exported, 0 included);
//   - payonce_payments_oldest_unfinished_age_seconds: how long the oldest
//     payment not yet succeeded or failed has existed (0 when none): a
//     charge stuck behind an outage or a misconfigured bank shows here
//     first, and an alert fires when it passes a few minutes;
//   - payonce_payments_recovery_parked: payments and refunds the recovery
//     worker set aside as impossible to finish;
//   - payonce_payments_fenced_writes_total: writes the fence refused
//     because their lock had passed to a newer holder (counted by fence).
//
// The status count reads the whole table; a fork with millions of
// payments would keep these numbers in a summary table instead.
func RegisterMetrics(meter metric.Meter, pool *pgxpool.Pool) error {
	byStatus, err := meter.Int64ObservableGauge("payonce.payments.by_status",
		metric.WithDescription("payments in each status"))
	if err != nil {
		return fmt.Errorf("payments metrics: %w", err)
	}
	oldest, err := meter.Float64ObservableGauge("payonce.payments.oldest_unfinished.age", metric.WithUnit("s"),
		metric.WithDescription("age of the oldest payment not yet succeeded or failed; 0 when none"))
	if err != nil {
		return fmt.Errorf("payments metrics: %w", err)
	}
	parked, err := meter.Int64ObservableGauge("payonce.payments.recovery.parked",
		metric.WithDescription("payments and refunds the recovery worker parked as impossible to finish"))
	if err != nil {
		return fmt.Errorf("payments metrics: %w", err)
	}
	fenced, err := meter.Int64Counter("payonce.payments.fenced_writes",
		metric.WithDescription("charge and refund writes refused by the fence: their lock had passed to a newer holder"))
	if err != nil {
		return fmt.Errorf("payments metrics: %w", err)
	}
	fenced.Add(context.Background(), 0)
	fencedWrites.Store(&fenced)

	statuses := []payments.Status{payments.Pending, payments.Authorizing, payments.Succeeded, payments.Failed}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		// A scrape must not hang on a database that is away.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		counts := map[string]int64{}
		var oldestAge float64
		rows, err := pool.Query(ctx, `
			SELECT status, count(*),
			       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
			FROM payments GROUP BY status`)
		if err != nil {
			return fmt.Errorf("payments metrics: %w", err)
		}
		for rows.Next() {
			var status string
			var n int64
			var age float64
			if err := rows.Scan(&status, &n, &age); err != nil {
				rows.Close()
				return fmt.Errorf("payments metrics: %w", err)
			}
			counts[status] = n
			if !payments.Status(status).Final() {
				oldestAge = max(oldestAge, age)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("payments metrics: %w", err)
		}
		var nParked int64
		if err := pool.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM payments WHERE recovery_parked_at IS NOT NULL)
			     + (SELECT count(*) FROM refunds WHERE recovery_parked_at IS NOT NULL)`).Scan(&nParked); err != nil {
			return fmt.Errorf("payments metrics: %w", err)
		}
		for _, s := range statuses {
			o.ObserveInt64(byStatus, counts[string(s)], metric.WithAttributes(attribute.String("status", string(s))))
		}
		o.ObserveFloat64(oldest, oldestAge)
		o.ObserveInt64(parked, nParked)
		return nil
	}, byStatus, oldest, parked)
	if err != nil {
		return fmt.Errorf("payments metrics: %w", err)
	}
	return nil
}

// fencedWrites is the counter fence adds to. It lives at package level
// because fence is the one function every fenced write goes through, and
// not a method of the Store; RegisterMetrics sets it once at start-up,
// before any write, and a process runs one payments service.
var fencedWrites atomic.Pointer[metric.Int64Counter]

// countFenced counts one write the fence refused.
func countFenced(ctx context.Context) {
	if c := fencedWrites.Load(); c != nil {
		(*c).Add(ctx, 1)
	}
}
