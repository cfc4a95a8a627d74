package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/otlpsink"
)

// TestTraceDumpRoundTrips: DEVSTACK_TRACE_DIR's files hold every span with
// its parent, service, times and attributes, and a trace that grew replaces
// its earlier dump instead of leaving two.
func TestTraceDumpRoundTrips(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "traces")
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	spans := []otlpsink.Span{
		{TraceID: "t1", SpanID: "a", Service: "orders", Name: "POST /v1/orders", Start: t0, End: t0.Add(40 * time.Millisecond)},
		{TraceID: "t1", SpanID: "b", ParentID: "a", Service: "payments", Name: "payments.settle", Start: t0.Add(5 * time.Millisecond),
			End: t0.Add(30 * time.Millisecond), Attributes: map[string]string{"lock.fence_token": "42"}, Error: true},
	}
	if err := writeTraceDump(dir, "t1", spans[:1]); err != nil {
		t.Fatal(err)
	}
	if err := writeTraceDump(dir, "t1", spans); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "t1.json" {
		t.Fatalf("dir holds %v, want only t1.json", entries)
	}
	data, err := os.ReadFile(filepath.Join(dir, "t1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got traceDump
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.TraceID != "t1" || len(got.Spans) != 2 {
		t.Fatalf("got %+v, want trace t1 with 2 spans", got)
	}
	b := got.Spans[1]
	if b.ParentID != "a" || b.Service != "payments" || !b.Start.Equal(spans[1].Start) || !b.End.Equal(spans[1].End) ||
		b.Attributes["lock.fence_token"] != "42" || !b.Error {
		t.Errorf("span b = %+v, want it as written", b)
	}
}
