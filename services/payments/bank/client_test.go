package bank_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/httpkit"
	banksim "github.com/payonce/payonce/services/bank"
	bankhttp "github.com/payonce/payonce/services/bank/http"
	"github.com/payonce/payonce/services/payments"
	"github.com/payonce/payonce/services/payments/bank"
)

func TestClassify(t *testing.T) {
	for status, want := range map[int]bank.Outcome{
		200: bank.Done, 201: bank.Done,
		400: bank.Declined, 402: bank.Declined, 422: bank.Declined,
		408: bank.Unknown, 409: bank.Unknown, 423: bank.Unknown, 425: bank.Unknown, 429: bank.Unknown,
		500: bank.Unknown, 502: bank.Unknown, 503: bank.Unknown, 504: bank.Unknown,
		401: bank.Misconfigured, 403: bank.Misconfigured, 404: bank.Misconfigured,
	} {
		if got := bank.Classify(status); got != want {
			t.Errorf("Classify(%d) = %s, want %s", status, got, want)
		}
	}
}

func newSimulator(t *testing.T) (*banksim.Simulator, string) {
	t.Helper()
	sim := banksim.NewSimulator(banksim.Faults{}, 1)
	srv := httptest.NewServer(httpkit.Router(httpkit.RouterConfig{API: bankhttp.NewHandler(sim, nil)}))
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

func answers(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "payonce.bank.answers" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				op, _ := dp.Attributes.Value("operation")
				oc, _ := dp.Attributes.Value("outcome")
				st, _ := dp.Attributes.Value("status")
				out[op.AsString()+"/"+oc.AsString()+"/"+st.AsString()] += dp.Value
			}
		}
	}
	return out
}

// TestAmbiguousAnswersAreNeverDeclines: every "outcome unknown" status and
// every misconfiguration leaves the charge and the refund undecided (an
// error, never Declined/Refused); asked again with the same key, the bank
// charges and refunds once.
func TestAmbiguousAnswersAreNeverDeclines(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{408, 409, 423, 425, 429, 500, 503, 401, 403, 404} {
		sim, url := newSimulator(t)
		reader := sdkmetric.NewManualReader()
		c := bank.NewClient(url, 5*time.Second, noop.NewTracerProvider(),
			bank.WithMeter(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")))
		charge := payments.BankCharge{Amount: 700, Currency: "EUR", Card: "4242424242424242", Reference: "pay_x"}

		if err := sim.SetFaults(banksim.Faults{AnswerNext: []int{status}}); err != nil {
			t.Fatal(err)
		}
		res, err := c.Charge(ctx, "charge-key", charge)
		if err == nil || res.Declined {
			t.Fatalf("%d: charge = %+v, %v; want an unknown outcome (error), not a decline", status, res, err)
		}
		if misconf := bank.Classify(status) == bank.Misconfigured; errors.Is(err, bank.ErrMisconfigured) != misconf {
			t.Fatalf("%d: error %v; misconfiguration %v", status, err, misconf)
		}
		res, err = c.Charge(ctx, "charge-key", charge)
		if err != nil || res.Declined || res.BankChargeID == "" {
			t.Fatalf("%d: second ask with the same key = %+v, %v; want the capture", status, res, err)
		}

		if err := sim.SetFaults(banksim.Faults{AnswerNext: []int{status}}); err != nil {
			t.Fatal(err)
		}
		ref, err := c.Refund(ctx, "refund-key", res.BankChargeID, 700)
		if err == nil || ref.Refused {
			t.Fatalf("%d: refund = %+v, %v; want an unknown outcome", status, ref, err)
		}
		if ref, err = c.Refund(ctx, "refund-key", res.BankChargeID, 700); err != nil || ref.Refused {
			t.Fatalf("%d: second refund ask = %+v, %v", status, ref, err)
		}
		if n := len(sim.Ledger(ctx, banksim.LedgerFilter{Kind: banksim.EntryCapture})); n != 1 {
			t.Fatalf("%d: %d captures, want 1", status, n)
		}
		if n := len(sim.Ledger(ctx, banksim.LedgerFilter{Kind: banksim.EntryRefund})); n != 1 {
			t.Fatalf("%d: %d refunds, want 1", status, n)
		}
		got := answers(t, reader)
		if got["charge/"+string(bank.Classify(status))+"/"+itoa(status)] != 1 || got["refund/"+string(bank.Classify(status))+"/"+itoa(status)] != 1 {
			t.Fatalf("%d: answers metric %v", status, got)
		}
	}
}

// TestDeclineIsFailed: an explicit decline, and only that, is final.
func TestDeclineIsFailed(t *testing.T) {
	sim, url := newSimulator(t)
	_ = sim.SetFaults(banksim.Faults{DeclineCards: []string{"4000000000000002"}})
	c := bank.NewClient(url, 5*time.Second, noop.NewTracerProvider())
	res, err := c.Charge(context.Background(), "k", payments.BankCharge{Amount: 700, Currency: "EUR", Card: "4000000000000002", Reference: "p"})
	if err != nil || !res.Declined {
		t.Fatalf("charge = %+v, %v; want declined", res, err)
	}
	ok, err := c.Charge(context.Background(), "k2", payments.BankCharge{Amount: 700, Currency: "EUR", Card: "4242424242424242", Reference: "q"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.Refund(context.Background(), "r", ok.BankChargeID, 701)
	if err != nil || !ref.Refused {
		t.Fatalf("refund of 0 = %+v, %v; want refused (more than captured)", ref, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
