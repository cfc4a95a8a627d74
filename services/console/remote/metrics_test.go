package remote_test

import (
	"testing"
	"time"

	"github.com/payonce/payonce/services/console/remote"
)

// TestParseMetricsReadsIdempotencyAndFenceRefusals parses a payments
// instance's exposition: the idempotency decisions are summed by outcome,
// and the fence's last refusal is read; an instance that reports no fence
// metrics has no Fence.
func TestParseMetricsReadsIdempotencyAndFenceRefusals(t *testing.T) {
	exposition := `# HELP payonce_idempotency_requests_total decisions
# TYPE payonce_idempotency_requests_total counter
payonce_idempotency_requests_total{outcome="claimed",route="POST /v1/payments"} 7
payonce_idempotency_requests_total{outcome="resumed",route="POST /v1/payments"} 1
payonce_idempotency_requests_total{outcome="replayed",route="POST /v1/payments"} 19
payonce_idempotency_requests_total{outcome="in_flight",route="POST /v1/payments"} 3
payonce_idempotency_requests_total{outcome="mismatch",route="POST /v1/payments"} 2
# TYPE payonce_payments_fenced_writes_total counter
payonce_payments_fenced_writes_total{otel_scope_name="payments"} 4
payonce_payments_fence_last_refusal_timestamp_seconds 1.7966592e+09
payonce_payments_fence_last_refused_token 41
payonce_payments_fence_last_fence_token 57
`
	m, err := remote.ParseMetrics("payments-2", []byte(exposition))
	if err != nil {
		t.Fatal(err)
	}
	if i := m.Idempotency; i.Instance != "payments-2" || i.First != 8 || i.Replayed != 19 || i.InFlight != 3 || i.Mismatched != 2 {
		t.Fatalf("idempotency %+v", i)
	}
	f := m.Fence
	if f == nil || f.Refused != 4 || f.LastToken != 41 || f.FenceToken != 57 || !f.LastAt.Equal(time.Unix(1796659200, 0)) {
		t.Fatalf("fence %+v", f)
	}
	m, err = remote.ParseMetrics("orders-1", []byte(`payonce_idempotency_requests_total{outcome="claimed"} 2`+"\n"))
	if err != nil || m.Fence != nil || m.Idempotency.First != 2 {
		t.Fatalf("orders: %+v %v", m, err)
	}
}
