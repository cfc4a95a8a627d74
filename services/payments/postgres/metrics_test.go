package postgres

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/services/payments"
)

// TestMetricsCountStatusesStuckPaymentsAndFencedWrites: the gauges follow
// the table (every status exported, 0 included; the oldest unfinished
// payment's age, ignoring final ones however old; parked rows), and a write
// the fence refuses is counted.
func TestMetricsCountStatusesStuckPaymentsAndFencedWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, dbURL := testenv.NewPool(t)
	if _, err := migrations.Up(ctx, dbURL, "payments"); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	if err := RegisterMetrics(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"), pool); err != nil {
		t.Fatal(err)
	}
	collect := func() (values map[string]float64) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		values = map[string]float64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				key := func(set attribute.Set) string {
					if s, ok := set.Value("status"); ok {
						return m.Name + "/" + s.AsString()
					}
					return m.Name
				}
				switch d := m.Data.(type) {
				case metricdata.Gauge[int64]:
					for _, dp := range d.DataPoints {
						values[key(dp.Attributes)] = float64(dp.Value)
					}
				case metricdata.Gauge[float64]:
					for _, dp := range d.DataPoints {
						values[key(dp.Attributes)] = dp.Value
					}
				case metricdata.Sum[int64]:
					for _, dp := range d.DataPoints {
						values[key(dp.Attributes)] = float64(dp.Value)
					}
				}
			}
		}
		return values
	}
	if v := collect(); v["payonce.payments.by_status/pending"] != 0 || v["payonce.payments.oldest_unfinished.age"] != 0 ||
		len(v) != 7 {
		t.Fatalf("empty table: %v; want the 4 statuses, the age, the parked count and the fenced writes, all 0", v)
	}

	insert := func(status payments.Status, age time.Duration, parked bool) {
		t.Helper()
		id := uuid.NewString()
		charge := "" // a succeeded payment names its bank charge
		if status == payments.Succeeded {
			charge = "ch-" + id
		}
		_, err := pool.Exec(ctx, `
			INSERT INTO payments (id, caller, customer_id, amount, currency, card, status, bank_key, bank_charge_id, created_at, recovery_parked_at)
			VALUES ($1::uuid, 'shop', 'alice', 100, 'EUR', '4242424242424242', $2, $1::text, nullif($3, ''), now() - $4::interval,
			        CASE WHEN $5 THEN now() END)`, id, string(status), charge, age, parked)
		if err != nil {
			t.Fatal(err)
		}
	}
	insert(payments.Succeeded, 10*time.Hour, false) // old, but final: not stuck
	insert(payments.Succeeded, time.Minute, false)
	insert(payments.Failed, time.Hour, false)
	insert(payments.Authorizing, 5*time.Minute, true)
	insert(payments.Pending, 30*time.Second, false)
	v := collect()
	for status, want := range map[string]float64{"pending": 1, "authorizing": 1, "succeeded": 2, "failed": 1} {
		if got := v["payonce.payments.by_status/"+status]; got != want {
			t.Errorf("%s: %v payments, want %v", status, got, want)
		}
	}
	if age := v["payonce.payments.oldest_unfinished.age"]; age < 300 || age > 600 {
		t.Errorf("oldest unfinished payment %v s old, want the authorizing one's 300 s (final payments ignored)", age)
	}
	if v["payonce.payments.recovery.parked"] != 1 {
		t.Errorf("%v parked, want 1", v["payonce.payments.recovery.parked"])
	}

	before := v["payonce.payments.fenced_writes"]
	for _, f := range []payments.Fence{{Epoch: 1, Token: 10, LeaseID: "new"}, {Epoch: 1, Token: 9, LeaseID: "old"}} {
		f.Resource = "customer:shop:alice"
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = fence(ctx, tx, f)
		_ = tx.Commit(ctx)
		if f.LeaseID == "old" && !errors.Is(err, payments.ErrFenced) {
			t.Fatalf("the stale write passed the fence: %v", err)
		}
	}
	if got := collect()["payonce.payments.fenced_writes"]; got != before+1 {
		t.Fatalf("fenced writes went from %v to %v, want one more", before, got)
	}
}
