package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric"

	"github.com/payonce/payonce/services/payments"
)

// FenceRefusal is the last write the fence refused, and why: the token it
// carried was below one the fence had already seen, because its lease had
// ended and a newer holder had written. The console shows it beside the
// locks (docs/console.md); it is exported on /metrics without the resource
// (a customer id must not leave the service through its metrics).
type FenceRefusal struct {
	At time.Time
	// Token is what the refused write carried; FenceToken what the fence
	// held then (the newer holder's), 0 if it could not be read.
	Token, FenceToken uint64
}

// fenceRefusals keeps the last refusal of this process. It is package
// state because fence, the one function every fenced write goes through,
// is not a method of the Store; a process runs one payments service.
var fenceRefusals lastFenceRefusal

type lastFenceRefusal struct {
	mu   sync.Mutex
	last FenceRefusal
}

// recordRefusal notes a write the fence refused. The refused upsert raised
// no error, so tx still answers: the fence row's token is read there, under
// the row lock the upsert took, so it is the token that refused this write.
func recordRefusal(ctx context.Context, tx pgx.Tx, f payments.Fence) {
	var held int64
	if err := tx.QueryRow(ctx, `SELECT token FROM fence_tokens WHERE resource = $1`, f.Resource).Scan(&held); err != nil {
		held = 0 // unknown; the refusal itself is still worth showing
	}
	fenceRefusals.mu.Lock()
	defer fenceRefusals.mu.Unlock()
	fenceRefusals.last = FenceRefusal{At: time.Now(), Token: f.Token, FenceToken: uint64(max(held, 0))}
}

// LastFenceRefusal returns the last write the fence refused in this
// process; ok is false when none was.
func LastFenceRefusal() (r FenceRefusal, ok bool) {
	fenceRefusals.mu.Lock()
	defer fenceRefusals.mu.Unlock()
	return fenceRefusals.last, !fenceRefusals.last.At.IsZero()
}

// RegisterFenceRefusalMetrics exports the last refusal as three gauges,
// absent until a write is refused:
//
//   - payonce_payments_fence_last_refusal_timestamp_seconds: when;
//   - payonce_payments_fence_last_refused_token: the token the write carried;
//   - payonce_payments_fence_last_fence_token: the token the fence held.
func RegisterFenceRefusalMetrics(meter metric.Meter) error {
	at, err := meter.Float64ObservableGauge("payonce.payments.fence.last_refusal.timestamp", metric.WithUnit("s"),
		metric.WithDescription("when the fence last refused a write (Unix time)"))
	if err != nil {
		return fmt.Errorf("fence refusal metrics: %w", err)
	}
	token, err := meter.Int64ObservableGauge("payonce.payments.fence.last_refused_token",
		metric.WithDescription("the fencing token the last refused write carried"))
	if err != nil {
		return fmt.Errorf("fence refusal metrics: %w", err)
	}
	held, err := meter.Int64ObservableGauge("payonce.payments.fence.last_fence_token",
		metric.WithDescription("the token the fence held when it refused the last write (the newer holder's); 0 if unknown"))
	if err != nil {
		return fmt.Errorf("fence refusal metrics: %w", err)
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r, ok := LastFenceRefusal()
		if !ok {
			return nil
		}
		o.ObserveFloat64(at, float64(r.At.UnixMilli())/1000)
		// Raft indexes, far below 2^63.
		o.ObserveInt64(token, int64(r.Token))
		o.ObserveInt64(held, int64(r.FenceToken))
		return nil
	}, at, token, held)
	if err != nil {
		return fmt.Errorf("fence refusal metrics: %w", err)
	}
	return nil
}
