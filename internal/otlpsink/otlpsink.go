// Package otlpsink is a minimal OTLP/HTTP trace receiver: it accepts the
// spans payonce's processes export and keeps them in memory, grouped by
// trace. Integration tests use it to assert that one order produced one
// trace across every service; the dev stack uses it to print each finished
// trace as a tree when no Jaeger is running.
package otlpsink

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, reduced to what tests and the printer need.
type Span struct {
	TraceID, SpanID, ParentID string
	Service                   string
	Name                      string
	Start, End                time.Time
	Attributes                map[string]string
	Error                     bool
}

// MaxSpans bounds the spans a Sink keeps: past it, whole traces are
// dropped, oldest first, so a dev stack left running for days (the
// coordinator's heartbeats alone make spans every second) stays small.
const MaxSpans = 200_000

// Sink receives OTLP/HTTP protobuf exports on POST /v1/traces.
type Sink struct {
	mu     sync.Mutex
	traces map[string][]Span
	order  []string // trace ids, oldest first
	count  int
	max    int
	notify chan struct{}
}

// New returns an empty sink that keeps at most MaxSpans spans.
func New() *Sink { return NewWithLimit(MaxSpans) }

// NewWithLimit returns an empty sink that keeps at most max spans.
func NewWithLimit(max int) *Sink {
	return &Sink{traces: map[string][]Span{}, max: max, notify: make(chan struct{}, 1)}
}

// ServeHTTP implements the OTLP/HTTP traces endpoint (protobuf encoding).
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, "expected OTLP protobuf: "+err.Error(), http.StatusBadRequest)
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range sp.GetAttributes() {
					attrs[kv.GetKey()] = valueString(kv.GetValue())
				}
				got = append(got, Span{
					TraceID:    hex.EncodeToString(sp.GetTraceId()),
					SpanID:     hex.EncodeToString(sp.GetSpanId()),
					ParentID:   hex.EncodeToString(sp.GetParentSpanId()),
					Service:    service,
					Name:       sp.GetName(),
					Start:      time.Unix(0, int64(sp.GetStartTimeUnixNano())),
					End:        time.Unix(0, int64(sp.GetEndTimeUnixNano())),
					Attributes: attrs,
					Error:      sp.GetStatus().GetCode() == 2,
				})
			}
		}
	}
	s.mu.Lock()
	for _, sp := range got {
		if _, seen := s.traces[sp.TraceID]; !seen {
			s.order = append(s.order, sp.TraceID)
		}
		s.traces[sp.TraceID] = append(s.traces[sp.TraceID], sp)
		s.count++
	}
	for s.count > s.max && len(s.order) > 1 {
		oldest := s.order[0]
		s.order = s.order[1:]
		s.count -= len(s.traces[oldest])
		delete(s.traces, oldest)
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// valueString renders an attribute value as its plain text: 201, true,
// 0.5 or the string itself.
func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case nil:
		return ""
	default:
		return strings.TrimSpace(fmt.Sprint(x))
	}
}

// Spans returns every span the sink keeps, trace by trace, oldest first.
func (s *Sink) Spans() []Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Span, 0, s.count)
	for _, id := range s.order {
		out = append(out, s.traces[id]...)
	}
	return out
}

// Trace returns the spans of one trace, ordered by start time.
func (s *Sink) Trace(traceID string) []Span {
	s.mu.Lock()
	out := append([]Span(nil), s.traces[traceID]...)
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Received is signalled (without blocking the sender) after each export.
func (s *Sink) Received() <-chan struct{} { return s.notify }

// Tree renders spans (one trace) as an indented tree with durations.
func Tree(spans []Span) string {
	children := map[string][]Span{}
	ids := map[string]bool{}
	for _, sp := range spans {
		ids[sp.SpanID] = true
	}
	var roots []Span
	for _, sp := range spans {
		if sp.ParentID == "" || !ids[sp.ParentID] {
			roots = append(roots, sp)
		} else {
			children[sp.ParentID] = append(children[sp.ParentID], sp)
		}
	}
	var b strings.Builder
	var walk func(sp Span, depth int)
	walk = func(sp Span, depth int) {
		mark := ""
		if sp.Error {
			mark = "  !error"
		}
		fmt.Fprintf(&b, "%s%-*s %-10s %8.2fms%s\n", strings.Repeat("  ", depth), 60-2*depth, sp.Name, sp.Service,
			float64(sp.End.Sub(sp.Start).Microseconds())/1000, mark)
		for _, c := range children[sp.SpanID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	return b.String()
}
