package tracesvg

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/tracesvg/tracesvgtest"
)

// fixture reads a trace from testdata: dump.json is a dev stack dump of a
// small payment (orders -> NATS -> payments -> bank, with a failed bank span
// and a name long enough to be cut); jaeger.json is the same shape as
// Jaeger's GET /api/traces/{id} answer.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
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
		{"dump", string(fixture(t, "dump.json")),
			[]string{"POST /v1/orders", "idempotency.begin", "publish orders.created", "process orders.created", "lock.acquire", "POST /v1/authorizations", "UPDATE payments SET status = $1"},
			[]string{"orders", "payments", "bank", "40.00ms", "57.00ms", "lock.fence_token = 42", "messaging.message.id = evt-1", "(error)", "<&>", "7 spans, 3 services, 90.00ms"}},
		{"jaeger", string(fixture(t, "jaeger.json")),
			[]string{"POST /v1/orders", "process orders.created", "lock.acquire"},
			[]string{"orders", "payments", "lock.fence_token = 42", "http.response.status_code = 201", "(error)", "3 spans, 2 services, 90.00ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Decode([]byte(tc.input), "")
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := Render(&out, tr, "", 1100); err != nil {
				t.Fatal(err)
			}
			text := tracesvgtest.Text(t, out.Bytes())
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
	tr, err := Decode(fixture(t, "dump.json"), "")
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

// FuzzDecodeAndRender: whatever the input, decoding either fails or gives a
// trace that renders to well-formed XML, without panicking.
func FuzzDecodeAndRender(f *testing.F) {
	f.Add(fixture(f, "dump.json"))
	f.Add(fixture(f, "jaeger.json"))
	f.Add([]byte(`{"trace_id":"x","spans":[{"span_id":"a","parent_id":"a","name":"\u0001\ufffe"}]}`))
	f.Add([]byte(`{"data":[{"spans":[{"spanID":"a","references":[{"spanID":"b"}]},{"spanID":"b","references":[{"spanID":"a"}]}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Decode(data, "")
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := Render(&out, tr, "", 1100); err != nil {
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
