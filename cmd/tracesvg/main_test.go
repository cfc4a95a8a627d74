package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/tracesvg/tracesvgtest"
)

// fixture reads one of internal/tracesvg's test traces.
func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "internal", "tracesvg", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestRunWritesTheFileAndRejectsBadInput drives the command as main does.
func TestRunWritesTheFileAndRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "trace.json")
	if err := os.WriteFile(in, []byte(fixture(t, "dump.json")), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "trace.svg")
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"tracesvg", "-o", out, "-title", "one payment", in}, func(string) string { return "" }, &stdout); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if text := tracesvgtest.Text(t, data); !strings.Contains(text, "one payment: 7 spans") {
		t.Errorf("title missing from the SVG:\n%s", text)
	}

	for name, input := range map[string]string{
		"not JSON":       "<html>",
		"no spans":       `{"trace_id":"x","spans":[]}`,
		"unknown format": `{"hello":"world"}`,
		"ends early":     `{"trace_id":"x","spans":[{"span_id":"a","name":"n","start":"2026-11-25T10:00:01Z","end":"2026-11-25T10:00:00Z"}]}`,
		"empty jaeger":   `{"data":[]}`,
	} {
		bad := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(bad, []byte(input), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := run(context.Background(), []string{"tracesvg", bad}, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("%s: rendered, want an error", name)
		}
	}
	if err := run(context.Background(), []string{"tracesvg", "-trace", "nope", in}, func(string) string { return "" }, io.Discard); err != nil {
		t.Errorf("-trace applies to Jaeger answers only; a dump has one trace: %v", err)
	}
	jf := filepath.Join(dir, "jaeger.json")
	if err := os.WriteFile(jf, []byte(fixture(t, "jaeger.json")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"tracesvg", "-trace", "nope", jf}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("-trace naming an absent trace: rendered, want an error")
	}
}
