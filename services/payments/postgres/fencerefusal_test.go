package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/services/payments"
)

// TestFenceRefusalIsRecordedWithBothTokens: a writer whose token is below
// the fence's is refused, and the refusal is kept with the token it carried
// and the token the fence held (read in the refused transaction), and
// exported as the gauges the console reads; a write that passes records
// nothing.
func TestFenceRefusalIsRecordedWithBothTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	fenceRefusals.mu.Lock()
	fenceRefusals.last = FenceRefusal{}
	fenceRefusals.mu.Unlock()
	reader := sdkmetric.NewManualReader()
	if err := RegisterFenceRefusalMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")); err != nil {
		t.Fatal(err)
	}
	write := func(f payments.Fence) error {
		f.Resource = "customer:shop:alice"
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := fence(ctx, tx, f); err != nil {
			return err
		}
		return tx.Commit(ctx)
	}
	if err := write(payments.Fence{Epoch: 1, Token: 57, LeaseID: "new"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := LastFenceRefusal(); ok {
		t.Fatal("a write that passed was recorded as refused")
	}
	before := time.Now()
	if err := write(payments.Fence{Epoch: 1, Token: 41, LeaseID: "stale"}); !errors.Is(err, payments.ErrFenced) {
		t.Fatalf("the stale write: %v, want ErrFenced", err)
	}
	r, ok := LastFenceRefusal()
	if !ok || r.Token != 41 || r.FenceToken != 57 || r.At.Before(before) {
		t.Fatalf("last refusal %+v (%v), want token 41 refused by 57", r, ok)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				got[m.Name] = float64(d.DataPoints[0].Value)
			case metricdata.Gauge[float64]:
				got[m.Name] = d.DataPoints[0].Value
			}
		}
	}
	if got["payonce.payments.fence.last_refused_token"] != 41 || got["payonce.payments.fence.last_fence_token"] != 57 ||
		got["payonce.payments.fence.last_refusal.timestamp"] < float64(before.Unix()) {
		t.Fatalf("exported %v", got)
	}
}
