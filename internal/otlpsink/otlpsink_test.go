package otlpsink_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/payonce/payonce/internal/otlpsink"
)

// TestSinkReceivesRealExports sends spans with the real OTLP/HTTP exporter
// and reads them back as one trace, rendered as a tree.
func TestSinkReceivesRealExports(t *testing.T) {
	sink := otlpsink.New()
	srv := httptest.NewServer(sink)
	defer srv.Close()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "unit"))))
	tracer := tp.Tracer("test")
	root, rootSpan := tracer.Start(ctx, "POST /v1/orders")
	_, child := tracer.Start(root, "SQL INSERT")
	child.SetAttributes(attribute.Int("http.response.status_code", 201), attribute.Bool("inbox.applied", true))
	child.End()
	rootSpan.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	spans := sink.Trace(rootSpan.SpanContext().TraceID().String())
	if len(spans) != 2 || spans[0].Name != "POST /v1/orders" || spans[0].Service != "unit" {
		t.Fatalf("spans %+v", spans)
	}
	if spans[1].ParentID != spans[0].SpanID {
		t.Fatal("child lost its parent")
	}
	if a := spans[1].Attributes; a["http.response.status_code"] != "201" || a["inbox.applied"] != "true" {
		t.Fatalf("attributes %v, want plain values", a)
	}
	tree := otlpsink.Tree(spans)
	if !strings.Contains(tree, "POST /v1/orders") || !strings.Contains(tree, "\n  SQL INSERT") {
		t.Fatalf("tree:\n%s", tree)
	}
}

func TestSinkRefusesWhatIsNotOTLP(t *testing.T) {
	srv := httptest.NewServer(otlpsink.New())
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/v1/traces", "application/x-protobuf", strings.NewReader("not protobuf \xff\xff"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

// TestSinkDropsOldestTraces keeps memory bounded: past the limit, whole
// traces go, oldest first, and the newest are kept.
func TestSinkDropsOldestTraces(t *testing.T) {
	sink := otlpsink.NewWithLimit(3)
	srv := httptest.NewServer(sink)
	defer srv.Close()
	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	var ids []string
	for range 4 {
		_, span := tp.Tracer("test").Start(ctx, "op")
		span.End()
		ids = append(ids, span.SpanContext().TraceID().String())
	}
	_ = tp.Shutdown(ctx)
	if got := len(sink.Spans()); got != 3 {
		t.Fatalf("kept %d spans, want 3", got)
	}
	if len(sink.Trace(ids[0])) != 0 || len(sink.Trace(ids[3])) != 1 {
		t.Fatal("did not drop the oldest trace first")
	}
}
