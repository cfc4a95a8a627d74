package outbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
)

// RegisterMetrics exports the state of pool's outbox on meter, read from
// the table at each scrape (one indexed query; the table is small once
// published rows are pruned):
//
//   - payonce_outbox_pending: rows waiting to be published;
//   - payonce_outbox_oldest_pending_age_seconds: how long the oldest of them
//     has waited, the outbox lag (0 when none waits): it grows during a NATS
//     outage and falls back once the relay catches up;
//   - payonce_outbox_parked: rows set aside because they can never be
//     published (see Relay.park); anything above zero needs a person.
//
// The service's name is the scrape job's label, so the same names serve
// orders and payments.
func RegisterMetrics(meter metric.Meter, pool *pgxpool.Pool) error {
	pending, err := meter.Int64ObservableGauge("payonce.outbox.pending",
		metric.WithDescription("outbox rows waiting to be published"))
	if err != nil {
		return fmt.Errorf("outbox metrics: %w", err)
	}
	age, err := meter.Float64ObservableGauge("payonce.outbox.oldest_pending.age", metric.WithUnit("s"),
		metric.WithDescription("how long the oldest outbox row waiting to be published has waited (the outbox lag); 0 when none waits"))
	if err != nil {
		return fmt.Errorf("outbox metrics: %w", err)
	}
	parked, err := meter.Int64ObservableGauge("payonce.outbox.parked",
		metric.WithDescription("outbox rows parked because they can never be published"))
	if err != nil {
		return fmt.Errorf("outbox metrics: %w", err)
	}
	_, err = meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		// A scrape must not hang on a database that is away: then no
		// sample is better than a late one.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var nPending, nParked int64
		var oldest float64
		err := pool.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE parked_at IS NULL),
			       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)), 0)::float8,
			       count(*) FILTER (WHERE parked_at IS NOT NULL)
			FROM outbox WHERE published_at IS NULL`).Scan(&nPending, &oldest, &nParked)
		if err != nil {
			return fmt.Errorf("outbox metrics: %w", err)
		}
		o.ObserveInt64(pending, nPending)
		o.ObserveFloat64(age, max(oldest, 0))
		o.ObserveInt64(parked, nParked)
		return nil
	}, pending, age, parked)
	if err != nil {
		return fmt.Errorf("outbox metrics: %w", err)
	}
	return nil
}
