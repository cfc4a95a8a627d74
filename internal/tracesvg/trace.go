package tracesvg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Span is one span of a trace, whichever format it was read from.
type Span struct {
	ID, ParentID string
	Service      string
	Name         string
	Start, End   time.Time
	Attributes   map[string]string
	Error        bool
}

// Trace is the spans of one trace.
type Trace struct {
	ID    string
	Spans []Span
}

// dump is the dev stack's trace file (DEVSTACK_TRACE_DIR, one file per
// trace; cmd/devstack writes it): the spans as the built-in OTLP sink
// received them, times in RFC 3339 with nanoseconds.
//
//	{"trace_id": "4bf9…", "spans": [{"span_id": "…", "parent_id": "…",
//	  "service": "orders", "name": "POST /v1/orders",
//	  "start": "2026-11-25T10:00:00.123456789Z", "end": "…",
//	  "attributes": {"http.response.status_code": "201"}, "error": false}]}
type dump struct {
	TraceID string `json:"trace_id"`
	Spans   []struct {
		SpanID     string            `json:"span_id"`
		ParentID   string            `json:"parent_id"`
		Service    string            `json:"service"`
		Name       string            `json:"name"`
		Start      time.Time         `json:"start"`
		End        time.Time         `json:"end"`
		Attributes map[string]string `json:"attributes"`
		Error      bool              `json:"error"`
	} `json:"spans"`
}

// jaegerAnswer is the part of Jaeger's query API answer
// (GET /api/traces/{id}, also GET /api/traces?service=…) that a waterfall
// needs. Times are microseconds since the epoch.
type jaegerAnswer struct {
	Data []struct {
		TraceID string `json:"traceID"`
		Spans   []struct {
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			References    []struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			StartTime int64 `json:"startTime"`
			Duration  int64 `json:"duration"`
			Tags      []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"tags"`
			ProcessID string `json:"processID"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
		} `json:"processes"`
	} `json:"data"`
}

// Decode reads one trace from either format. traceID picks a trace
// when a Jaeger answer holds several; empty takes the first.
func Decode(data []byte, traceID string) (Trace, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return Trace{}, fmt.Errorf("not a JSON object: %w", err)
	}
	switch {
	case probe["data"] != nil:
		return decodeJaeger(data, traceID)
	case probe["spans"] != nil:
		return decodeDump(data)
	default:
		return Trace{}, errors.New(`neither a Jaeger answer ("data") nor a dev stack dump ("spans")`)
	}
}

func decodeDump(data []byte) (Trace, error) {
	var d dump
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		return Trace{}, fmt.Errorf("dev stack dump: %w", err)
	}
	t := Trace{ID: d.TraceID}
	for _, s := range d.Spans {
		t.Spans = append(t.Spans, Span{
			ID: s.SpanID, ParentID: s.ParentID, Service: s.Service, Name: s.Name,
			Start: s.Start, End: s.End, Attributes: s.Attributes, Error: s.Error,
		})
	}
	return t, checkSpans(t)
}

func decodeJaeger(data []byte, traceID string) (Trace, error) {
	var a jaegerAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return Trace{}, fmt.Errorf("jaeger answer: %w", err)
	}
	for _, d := range a.Data {
		if traceID != "" && d.TraceID != traceID {
			continue
		}
		t := Trace{ID: d.TraceID}
		for _, s := range d.Spans {
			sp := Span{
				ID:         s.SpanID,
				Service:    d.Processes[s.ProcessID].ServiceName,
				Name:       s.OperationName,
				Start:      time.UnixMicro(s.StartTime),
				End:        time.UnixMicro(s.StartTime + s.Duration),
				Attributes: map[string]string{},
			}
			for _, r := range s.References {
				if r.RefType == "CHILD_OF" || sp.ParentID == "" {
					sp.ParentID = r.SpanID
				}
			}
			for _, tag := range s.Tags {
				v := tagString(tag.Value)
				sp.Attributes[tag.Key] = v
				if (tag.Key == "error" && v == "true") || (tag.Key == "otel.status_code" && v == "ERROR") {
					sp.Error = true
				}
			}
			t.Spans = append(t.Spans, sp)
		}
		return t, checkSpans(t)
	}
	if traceID != "" {
		return Trace{}, fmt.Errorf("jaeger answer holds no trace %s", traceID)
	}
	return Trace{}, errors.New("jaeger answer holds no trace")
}

func tagString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// maxSpans bounds the picture: a trace larger than this is not a payment.
const maxSpans = 5000

func checkSpans(t Trace) error {
	switch {
	case len(t.Spans) == 0:
		return errors.New("the trace has no spans")
	case len(t.Spans) > maxSpans:
		return fmt.Errorf("the trace has %d spans; at most %d are drawn", len(t.Spans), maxSpans)
	}
	for _, s := range t.Spans {
		if s.End.Before(s.Start) {
			return fmt.Errorf("span %s (%s) ends before it starts", s.ID, s.Name)
		}
	}
	return nil
}

// row is a span placed in the waterfall: its depth in the tree, in the
// order Jaeger draws it (depth first, children by start time).
type row struct {
	Span
	Depth int
}

func rows(t Trace) []row {
	ids := map[string]bool{}
	for _, s := range t.Spans {
		ids[s.ID] = true
	}
	children := map[string][]Span{}
	var roots []Span
	for _, s := range t.Spans {
		if s.ParentID == "" || !ids[s.ParentID] || s.ParentID == s.ID {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	byStart := func(list []Span) {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Start.Before(list[j].Start) })
	}
	byStart(roots)
	var out []row
	seen := map[string]bool{}
	var walk func(s Span, depth int)
	walk = func(s Span, depth int) {
		if seen[s.ID] { // a cycle in bad input: draw each span once
			return
		}
		seen[s.ID] = true
		out = append(out, row{Span: s, Depth: depth})
		kids := children[s.ID]
		byStart(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	// Spans caught in a parent cycle reach no root; draw them at the top level.
	for _, s := range t.Spans {
		if !seen[s.ID] {
			walk(s, 0)
		}
	}
	return out
}
