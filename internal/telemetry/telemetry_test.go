package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/internal/telemetry"
)

func TestSetupWithoutExporterIsSilentAndLogsTraceIDs(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	recorder := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		ServiceName:    "unit",
		Getenv:         func(string) string { return "" },
		LogOutput:      &logs,
		SpanProcessors: []sdktrace.SpanProcessor{recorder},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	if tel.Exporting {
		t.Fatal("exporting with no OTEL_EXPORTER_OTLP_ENDPOINT set")
	}

	spanCtx, span := tel.Tracer("unit").Start(ctx, "work")
	tel.Logger.InfoContext(spanCtx, "inside a span")
	span.End()
	tel.Logger.InfoContext(ctx, "outside any span")

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), logs.String())
	}
	var inside, outside map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &inside); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &outside); err != nil {
		t.Fatal(err)
	}
	if inside["trace_id"] != span.SpanContext().TraceID().String() || inside["span_id"] != span.SpanContext().SpanID().String() {
		t.Errorf("log inside span has trace_id=%v span_id=%v, want %s %s", inside["trace_id"], inside["span_id"],
			span.SpanContext().TraceID(), span.SpanContext().SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("log outside any span has a trace_id: %v", outside)
	}
	if inside["service"] != "unit" {
		t.Errorf("service attribute %v, want unit", inside["service"])
	}
	if n := len(recorder.Ended()); n != 1 {
		t.Errorf("recorder saw %d spans, want 1", n)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "unit"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	counter, err := tel.Meter("unit").Int64Counter("payonce_test_events")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 3)
	rec := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Result().Body)
	if !strings.Contains(string(body), "payonce_test_events_total") {
		t.Fatalf("/metrics lacks the counter:\n%.2000s", body)
	}
	if !strings.Contains(string(body), "go_goroutines") {
		t.Fatal("/metrics lacks the Go runtime collector")
	}
}

func TestBadConfigurationIsRefused(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"unknown protocol": {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
		"bad log level":    {"LOG_LEVEL": "loud"},
		"bad log format":   {"LOG_FORMAT": "xml"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "unit", Getenv: func(k string) string { return env[k] }})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestShutdownFlushesToOTLP runs the real OTLP/HTTP exporter against a
// receiver on loopback: spans buffered in the batcher must arrive by the
// time Shutdown returns, or the last requests before a restart vanish.
func TestShutdownFlushesToOTLP(t *testing.T) {
	received := make(chan string, 10)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- r.URL.Path + " " + r.Header.Get("Content-Type") + " " + strconv.Itoa(len(body))
		w.WriteHeader(http.StatusOK)
	}))
	defer receiver.Close()
	// The OTLP exporters read their settings from the process environment.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "unit", Getenv: os.Getenv})
	if err != nil {
		t.Fatal(err)
	}
	if !tel.Exporting {
		t.Fatal("not exporting with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	_, span := tel.Tracer("unit").Start(ctx, "last request before shutdown")
	span.End()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-received:
		if !strings.HasPrefix(got, "/v1/traces application/x-protobuf ") {
			t.Fatalf("receiver got %q, want a protobuf POST to /v1/traces", got)
		}
	default:
		t.Fatal("Shutdown returned before the buffered span was exported")
	}
}

// TestInstanceIDOnSpansAndMetrics runs two instances of one service, as
// compose runs orders-1 and orders-2: their spans must carry different
// service.instance.id resource attributes (what Jaeger shows per process)
// and every payonce series on /metrics the service_instance_id label, or a
// ring owner cannot be told from its peer.
func TestInstanceIDOnSpansAndMetrics(t *testing.T) {
	ctx := context.Background()
	spansOf := map[string]*tracetest.SpanRecorder{}
	metricsOf := map[string]string{}
	for _, tc := range []struct{ instance, fromConfig, fromEnv string }{
		{instance: "orders-1", fromEnv: "orders-1"},
		{instance: "orders-2", fromConfig: "orders-2", fromEnv: "ignored-when-config-names-one"},
	} {
		recorder := tracetest.NewSpanRecorder()
		tel, err := telemetry.Setup(ctx, telemetry.Config{
			ServiceName:    "orders",
			InstanceID:     tc.fromConfig,
			Getenv:         func(k string) string { return map[string]string{"INSTANCE_ID": tc.fromEnv}[k] },
			SpanProcessors: []sdktrace.SpanProcessor{recorder},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, span := tel.Tracer("unit").Start(ctx, "create order")
		span.End()
		counter, err := tel.Meter("unit").Int64Counter("payonce_test_orders")
		if err != nil {
			t.Fatal(err)
		}
		counter.Add(ctx, 1)
		rec := httptest.NewRecorder()
		tel.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		metricsOf[tc.instance] = rec.Body.String()
		spansOf[tc.instance] = recorder
		_ = tel.Shutdown(ctx)
	}
	for instance, recorder := range spansOf {
		ended := recorder.Ended()
		if len(ended) != 1 {
			t.Fatalf("%s: %d spans, want 1", instance, len(ended))
		}
		got, ok := ended[0].Resource().Set().Value(telemetry.InstanceKey)
		if !ok || got.AsString() != instance {
			t.Errorf("%s's span has %s=%q (present %v), want %q", instance, telemetry.InstanceKey, got.AsString(), ok, instance)
		}
		for _, want := range []string{
			`payonce_test_orders_total{otel_scope_name="unit",otel_scope_schema_url="",otel_scope_version="",service_instance_id="` + instance + `"} 1`,
			// Registered on the registry directly, not through OpenTelemetry.
			`go_goroutines{service_instance_id="` + instance + `"} `,
		} {
			if !strings.Contains(metricsOf[instance], want) {
				t.Errorf("%s's /metrics lacks %s:\n%.3000s", instance, want, metricsOf[instance])
			}
		}
	}
}

func TestInstanceIDDefaultsToHostName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	recorder := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "bank", SpanProcessors: []sdktrace.SpanProcessor{recorder}})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	_, span := tel.Tracer("unit").Start(context.Background(), "charge")
	span.End()
	if got, _ := recorder.Ended()[0].Resource().Set().Value(telemetry.InstanceKey); got.AsString() != host {
		t.Errorf("%s=%q with no INSTANCE_ID, want the host name %q", telemetry.InstanceKey, got.AsString(), host)
	}
}
