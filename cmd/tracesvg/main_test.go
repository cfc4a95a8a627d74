package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A dev stack dump of a small payment: orders -> NATS -> payments -> bank,
// with a failed bank span, and a name long enough to be cut.
const dumpTrace = `{
  "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
  "spans": [
    {"span_id": "a1", "service": "orders", "name": "POST /v1/orders",
     "start": "2026-11-25T10:00:00.000Z", "end": "2026-11-25T10:00:00.040Z",
     "attributes": {"http.response.status_code": "201"}},
    {"span_id": "b2", "parent_id": "a1", "service": "orders", "name": "idempotency.begin",
     "start": "2026-11-25T10:00:00.002Z", "end": "2026-11-25T10:00:00.004Z"},
    {"span_id": "c3", "parent_id": "a1", "service": "orders", "name": "publish orders.created",
     "start": "2026-11-25T10:00:00.030Z", "end": "2026-11-25T10:00:00.031Z",
     "attributes": {"messaging.message.id": "evt-1"}},
    {"span_id": "d4", "parent_id": "c3", "service": "payments", "name": "process orders.created",
     "start": "2026-11-25T10:00:00.033Z", "end": "2026-11-25T10:00:00.090Z"},
    {"span_id": "e5", "parent_id": "d4", "service": "payments", "name": "lock.acquire",
     "start": "2026-11-25T10:00:00.035Z", "end": "2026-11-25T10:00:00.045Z",
     "attributes": {"lock.fence_token": "42"}},
    {"span_id": "f6", "parent_id": "d4", "service": "bank", "name": "POST /v1/authorizations",
     "start": "2026-11-25T10:00:00.050Z", "end": "2026-11-25T10:00:00.060Z", "error": true},
    {"span_id": "g7", "parent_id": "d4", "service": "payments",
     "name": "UPDATE payments SET status = $1, updated_at = now() WHERE id = $2 AND status = 'authorizing' <&>",
     "start": "2026-11-25T10:00:00.061Z", "end": "2026-11-25T10:00:00.062Z"}
  ]
}`

// The same shape as Jaeger's GET /api/traces/{id} answer.
const jaegerTrace = `{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spans":[
  {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1","operationName":"POST /v1/orders","references":[],
   "startTime":1795600800000000,"duration":40000,"tags":[{"key":"http.response.status_code","type":"int64","value":201}],"processID":"p1"},
  {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"d4","operationName":"process orders.created",
   "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"a1"}],
   "startTime":1795600800033000,"duration":57000,"tags":[],"processID":"p2"},
  {"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"e5","operationName":"lock.acquire",
   "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"d4"}],
   "startTime":1795600800035000,"duration":10000,"tags":[{"key":"lock.fence_token","type":"int64","value":42},{"key":"error","type":"bool","value":true}],"processID":"p2"}],
  "processes":{"p1":{"serviceName":"orders","tags":[]},"p2":{"serviceName":"payments","tags":[]}}}],
 "total":0,"limit":0,"offset":0,"errors":null}`

// svgText checks that data is well-formed XML with an <svg> root and
// returns its character data (text and titles), joined.
func svgText(t *testing.T, data []byte) string {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var text strings.Builder
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v\n%s", err, data)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
				if tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q, want the SVG namespace", tok.Name.Space)
				}
			}
		case xml.CharData:
			text.Write(tok)
			text.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return text.String()
}

// TestRendersEachSpanAsWellFormedSVG: both input formats give a
// well-formed SVG naming every span, every service in the legend, the
// durations, the attributes (in the rows' titles) and the errors.
func TestRendersEachSpanAsWellFormedSVG(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		spans       []string
		want        []string
	}{
		{"dump", dumpTrace,
			[]string{"POST /v1/orders", "idempotency.begin", "publish orders.created", "process orders.created", "lock.acquire", "POST /v1/authorizations", "UPDATE payments SET status = $1"},
			[]string{"orders", "payments", "bank", "40.00ms", "57.00ms", "lock.fence_token = 42", "messaging.message.id = evt-1", "(error)", "<&>", "7 spans, 3 services, 90.00ms"}},
		{"jaeger", jaegerTrace,
			[]string{"POST /v1/orders", "process orders.created", "lock.acquire"},
			[]string{"orders", "payments", "lock.fence_token = 42", "http.response.status_code = 201", "(error)", "3 spans, 2 services, 90.00ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := decodeTrace([]byte(tc.input), "")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := renderSVG(&out, tr, "", 1100); err != nil {
				t.Fatal(err)
			}
			text := svgText(t, out.Bytes())
			for _, s := range append(tc.spans, tc.want...) {
				if !strings.Contains(text, s) {
					t.Errorf("the SVG does not show %q", s)
				}
			}
			if n := strings.Count(out.String(), "<g><title>"); n != len(tc.spans) {
				t.Errorf("%d span rows, want %d", n, len(tc.spans))
			}
		})
	}
}

// TestRowsFollowTheTree: rows come depth first with children in start
// order, as Jaeger draws them, and the depth is the nesting.
func TestRowsFollowTheTree(t *testing.T) {
	tr, err := decodeTrace([]byte(dumpTrace), "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows(tr) {
		got = append(got, strings.Repeat(">", r.Depth)+r.ID)
	}
	want := "a1 >b2 >c3 >>d4 >>>e5 >>>f6 >>>g7"
	if strings.Join(got, " ") != want {
		t.Errorf("rows %q, want %q", strings.Join(got, " "), want)
	}
}

// TestRunWritesTheFileAndRejectsBadInput drives the command as main does.
func TestRunWritesTheFileAndRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "trace.json")
	if err := os.WriteFile(in, []byte(dumpTrace), 0o644); err != nil {
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
	if text := svgText(t, data); !strings.Contains(text, "one payment: 7 spans") {
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
	if err := os.WriteFile(jf, []byte(jaegerTrace), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"tracesvg", "-trace", "nope", jf}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("-trace naming an absent trace: rendered, want an error")
	}
}

// FuzzDecodeAndRender: whatever the input, decoding either fails or gives a
// trace that renders to well-formed XML, without panicking.
func FuzzDecodeAndRender(f *testing.F) {
	f.Add([]byte(dumpTrace))
	f.Add([]byte(jaegerTrace))
	f.Add([]byte(`{"trace_id":"x","spans":[{"span_id":"a","parent_id":"a","name":"\u0001\ufffe"}]}`))
	f.Add([]byte(`{"data":[{"spans":[{"spanID":"a","references":[{"spanID":"b"}]},{"spanID":"b","references":[{"spanID":"a"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := decodeTrace(data, "")
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := renderSVG(&out, tr, "", 1100); err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(&out)
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("not well-formed: %v", err)
			}
		}
	})
}
