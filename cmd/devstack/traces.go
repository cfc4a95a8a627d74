package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/otlpsink"
	"github.com/payonce/payonce/internal/proc"
)

// traceViewer says where the stack's traces can be seen.
type traceViewer struct {
	jaegerURL string // set when Jaeger runs
	sinkURL   string // set when the built-in sink runs
}

func (v traceViewer) describe() string {
	if v.jaegerURL != "" {
		return "Jaeger " + v.jaegerURL + " (API: " + v.jaegerURL + "/api/traces?service=orders)"
	}
	return "built-in OTLP sink " + v.sinkURL + ": each finished trace is printed below as a tree"
}

// startTraces starts Jaeger or the built-in sink on cfg.OTLPPort and
// returns the OTLP/HTTP endpoint the services export to.
func (s *stack) startTraces(ctx context.Context, cfg config) (string, error) {
	endpoint := fmt.Sprintf("http://127.0.0.1:%d", cfg.OTLPPort)
	jaeger := cfg.JaegerBin
	if jaeger == "" && cfg.Traces != "sink" {
		jaeger, _ = exec.LookPath("jaeger")
	}
	switch {
	case cfg.Traces == "jaeger" && jaeger == "":
		return "", errors.New("DEVSTACK_TRACES=jaeger but no Jaeger binary: set JAEGER_BIN or put `jaeger` on PATH")
	case cfg.Traces != "sink" && jaeger != "":
		return endpoint, s.startJaeger(ctx, cfg, jaeger)
	}

	fmt.Fprintln(s.out, "devstack: no Jaeger binary found (JAEGER_BIN, PATH): starting the built-in OTLP sink")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.OTLPPort))
	if err != nil {
		return "", fmt.Errorf("OTLP sink: %w", err)
	}
	sink := otlpsink.New()
	srv := &http.Server{Handler: sink, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	printerCtx, stopPrinter := context.WithCancel(context.Background())
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		printFinishedTraces(printerCtx, sink, cfg.TraceQuiet, cfg.TraceDir, s.out)
	}()
	// Registered before the services start, so it runs after they stopped
	// and flushed their last spans.
	s.onStop(func() error {
		stopPrinter()
		<-printed
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	s.trace = traceViewer{sinkURL: endpoint}
	s.sink = sink
	return endpoint, nil
}

// startJaeger runs the Jaeger v2 all-in-one binary with its OTLP receivers
// and query API moved to loopback (by default they listen on every
// interface, and the query ports ignore JAEGER_LISTEN_HOST).
func (s *stack) startJaeger(ctx context.Context, cfg config, bin string) error {
	grpcPort, err := proc.FreePort()
	if err != nil {
		return err
	}
	queryGRPC, err := proc.FreePort()
	if err != nil {
		return err
	}
	args := []string{
		fmt.Sprintf("--set=receivers.otlp.protocols.http.endpoint=127.0.0.1:%d", cfg.OTLPPort),
		fmt.Sprintf("--set=receivers.otlp.protocols.grpc.endpoint=127.0.0.1:%d", grpcPort),
		fmt.Sprintf("--set=extensions.jaeger_query.http.endpoint=127.0.0.1:%d", cfg.JaegerUIPort),
		fmt.Sprintf("--set=extensions.jaeger_query.grpc.endpoint=127.0.0.1:%d", queryGRPC),
	}
	fmt.Fprintf(s.out, "devstack: starting Jaeger (%s)\n", bin)
	cmd := exec.Command(bin, args...)
	// Jaeger logs every start-up step at info; its output is kept and
	// shown only if it fails to start.
	var log strings.Builder
	logw := &lockedBuilder{b: &log}
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start jaeger: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.jaegerPid = cmd.Process.Pid
	s.onStop(func() error {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			_ = cmd.Process.Kill() // no SIGTERM on Windows
		}
		select {
		case <-done:
		case <-time.After(stopGrace):
			_ = cmd.Process.Kill()
			<-done
		}
		return nil
	})
	ui := fmt.Sprintf("http://127.0.0.1:%d", cfg.JaegerUIPort)
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get(ui + "/api/services"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.trace = traceViewer{jaegerURL: ui}
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("jaeger exited during start-up:\n%s", log.String())
		case <-ctx.Done():
			return fmt.Errorf("jaeger not ready at %s/api/services", ui)
		case <-tick.C:
		}
	}
}

// printFinishedTraces prints each trace as a tree once no span of it has
// arrived for quiet. A trace that grows after it was printed (a late
// hop, such as a retried charge) is printed again, whole. When dir is set,
// each printed trace is also written there as JSON (see writeTraceDump).
func printFinishedTraces(ctx context.Context, sink *otlpsink.Sink, quiet time.Duration, dir string, out io.Writer) {
	type progress struct {
		spans   int       // spans received so far
		grew    time.Time // when the count last changed
		printed int       // spans in the last printed tree
	}
	traces := map[string]*progress{}
	tick := time.NewTicker(quiet / 4)
	defer tick.Stop()
	flush := func(final bool) {
		byTrace := map[string][]otlpsink.Span{}
		for _, sp := range sink.Spans() {
			byTrace[sp.TraceID] = append(byTrace[sp.TraceID], sp)
		}
		now := time.Now()
		var ready []string
		for id, spans := range byTrace {
			p := traces[id]
			if p == nil {
				p = &progress{}
				traces[id] = p
			}
			if len(spans) != p.spans {
				p.spans, p.grew = len(spans), now
			}
			if p.spans != p.printed && (final || now.Sub(p.grew) >= quiet) && !coordinatorOnly(spans) {
				ready = append(ready, id)
			}
		}
		sort.Slice(ready, func(i, j int) bool { return start(byTrace[ready[i]]).Before(start(byTrace[ready[j]])) })
		for _, id := range ready {
			spans := byTrace[id]
			sort.Slice(spans, func(i, j int) bool { return spans[i].Start.Before(spans[j].Start) })
			_, _ = io.WriteString(out, renderTrace(id, spans, traces[id].printed > 0))
			if dir != "" {
				if err := writeTraceDump(dir, id, spans); err != nil {
					fmt.Fprintf(out, "devstack: trace dump: %v\n", err)
				}
			}
			traces[id].printed = len(spans)
		}
	}
	for {
		select {
		case <-ctx.Done():
			flush(true)
			return
		case <-tick.C:
			flush(false)
		}
	}
}

// traceDump is the JSON file DEVSTACK_TRACE_DIR receives per trace, and one
// of the two formats cmd/tracesvg renders (the other is Jaeger's
// /api/traces/{id} answer). Times are RFC 3339 with nanoseconds.
type traceDump struct {
	TraceID string          `json:"trace_id"`
	Spans   []traceDumpSpan `json:"spans"`
}

type traceDumpSpan struct {
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_id,omitempty"`
	Service    string            `json:"service"`
	Name       string            `json:"name"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Attributes map[string]string `json:"attributes,omitempty"`
	Error      bool              `json:"error,omitempty"`
}

// writeTraceDump writes spans (one trace) to dir/<id>.json, replacing an
// earlier dump of the same trace when it grew. It writes a temporary file
// and renames it, so a reader never sees half a trace.
func writeTraceDump(dir, id string, spans []otlpsink.Span) error {
	data, err := json.MarshalIndent(dumpOf(id, spans), "", "  ")
	if err != nil {
		return fmt.Errorf("encode trace %s: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+id+".json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, id+".json"))
}

// dumpOf is spans (one trace) in the dump format.
func dumpOf(id string, spans []otlpsink.Span) traceDump {
	d := traceDump{TraceID: id}
	for _, sp := range spans {
		d.Spans = append(d.Spans, traceDumpSpan{
			SpanID: sp.SpanID, ParentID: sp.ParentID, Service: sp.Service, Name: sp.Name,
			Start: sp.Start, End: sp.End, Attributes: sp.Attributes, Error: sp.Error,
		})
	}
	return d
}

// coordinatorOnly reports whether a trace is the coordinator's own
// background traffic (membership heartbeats, long polls, Raft reads), which
// would bury the payment traces if printed.
func coordinatorOnly(spans []otlpsink.Span) bool {
	for _, sp := range spans {
		if sp.Service != "coordinator" {
			return false
		}
	}
	return true
}

func start(spans []otlpsink.Span) time.Time {
	first := spans[0].Start
	for _, sp := range spans {
		if sp.Start.Before(first) {
			first = sp.Start
		}
	}
	return first
}

// renderTrace is one printed trace: a header naming the trace, then
// otlpsink's tree, written in one piece.
func renderTrace(id string, spans []otlpsink.Span, again bool) string {
	services := map[string]bool{}
	for _, sp := range spans {
		services[sp.Service] = true
	}
	var names []string
	for s := range services {
		names = append(names, s)
	}
	sort.Strings(names)
	verb := "finished"
	if again {
		verb = "grew"
	}
	return fmt.Sprintf("trace %s %s: %d spans, services %s\n%s", id, verb, len(spans), strings.Join(names, ","), otlpsink.Tree(spans))
}

// waitMembers waits until the coordinator lists n live instances of service,
// so the ring is complete before the stack says it is ready.
func waitMembers(ctx context.Context, client *http.Client, coordinatorURL, service string, n int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	got := 0
	for {
		resp, err := client.Get(coordinatorURL + "/v1/services/" + service + "/members")
		if err == nil {
			var body struct {
				Members []json.RawMessage `json:"members"`
			}
			if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&body) == nil {
				got = len(body.Members)
			}
			resp.Body.Close()
		}
		if got == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d of %d instances registered with the coordinator", service, got, n)
		case <-tick.C:
		}
	}
}

type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
