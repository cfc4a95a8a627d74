package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the service binaries for every test in this package, built
// once by the first dev stack and reused by the next.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "payonce-devstack-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// runningStack is a dev stack started by a test through run(), as
// `make dev` starts it, but on free ports.
type runningStack struct {
	urls     map[string]string // "orders-1" -> "http://127.0.0.1:41234"
	pids     map[string]int    // "orders-1" -> 4242
	stateDir string
	pkiDir   string // the certificates devstack issued
	out      *outputLog
	cancel   context.CancelFunc
	done     chan error
	stopped  bool
}

// freePortEnv makes every part of the stack listen on a free port, and
// forces the built-in trace sink so the test does not depend on whether
// Jaeger is installed.
func freePortEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DEVSTACK_POSTGRES_PORT":     "0",
		"DEVSTACK_NATS_PORT":         "0",
		"DEVSTACK_BANK_PORT":         "0",
		"DEVSTACK_OTLP_PORT":         "0",
		"DEVSTACK_JAEGER_UI_PORT":    "0",
		"DEVSTACK_CONSOLE_PORT":      "0",
		"DEVSTACK_CONTROL_PORT":      "0",
		"DEVSTACK_COORDINATOR_PORTS": "0,0,0",
		"DEVSTACK_RAFT_PORTS":        "0,0,0",
		"DEVSTACK_PAYMENTS_PORTS":    "0,0",
		"DEVSTACK_ORDERS_PORTS":      "0,0",
		"DEVSTACK_TRACES":            "sink",
		"DEVSTACK_BIN_DIR":           binDir,
		"DEVSTACK_STATE_DIR":         t.TempDir(),
		// The browser test ends each database outage it starts with the
		// page's "start now", whenever the stack gets there: never by a
		// timer that a loaded machine could beat.
		"DEVSTACK_CONSOLE_OUTAGE_FOR": "10m",
	}
}

// startStack runs the dev stack until it prints that it is ready, and
// stops it when the test ends (if the test did not).
func startStack(t *testing.T) *runningStack {
	t.Helper()
	env := freePortEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := &runningStack{
		urls: map[string]string{}, pids: map[string]int{}, stateDir: env["DEVSTACK_STATE_DIR"],
		out: newOutputLog(), cancel: cancel, done: make(chan error, 1),
	}
	r, w := io.Pipe()
	go func() {
		err := run(ctx, []string{"devstack"}, func(k string) string { return env[k] }, w)
		_ = w.Close()
		s.done <- err
	}()
	go s.out.consume(r)
	t.Cleanup(func() {
		if !s.stopped {
			s.stop(t)
		}
		if t.Failed() {
			t.Logf("devstack output:\n%s", s.out.text())
		}
	})

	// Any line, not the last one: a service may log right after the
	// stack is ready, before this wakes up to look.
	ready, err := s.out.waitFor(5*time.Minute, func(lines []string) bool {
		return slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "devstack: press Ctrl-C") })
	})
	if !ready {
		t.Fatalf("devstack was not ready within 5 minutes (%v)", err)
	}
	inTable := false
	for _, line := range s.out.lines() {
		switch {
		case line == "devstack: ready":
			inTable = true
		case strings.HasPrefix(line, "devstack:"):
			inTable = false
		case inTable:
			fields := strings.Fields(line)
			if len(fields) >= 2 && fields[0] == "certificates" {
				s.pkiDir = fields[1]
			}
			if len(fields) >= 2 && strings.Contains(fields[1], "://") {
				s.urls[fields[0]] = fields[1]
			}
			if len(fields) >= 2 && strings.Contains(fields[len(fields)-1], "://") {
				s.urls[strings.Join(fields[:len(fields)-1], " ")] = fields[len(fields)-1]
			}
			if len(fields) >= 4 && fields[len(fields)-2] == "pid" {
				pid, err := strconv.Atoi(fields[len(fields)-1])
				if err != nil {
					t.Fatalf("bad pid in %q", line)
				}
				s.pids[fields[0]] = pid
			}
		}
	}
	return s
}

// stop cancels the stack's context, which is what Ctrl-C does, and waits
// for run to return.
func (s *runningStack) stop(t *testing.T) {
	t.Helper()
	s.stopped = true
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("devstack returned %v", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("devstack did not stop within 90s of cancellation")
	}
}

// addrs returns host:port of every URL the stack printed.
func (s *runningStack) addrs(t *testing.T) []string {
	t.Helper()
	var out []string
	for name, raw := range s.urls {
		u, err := url.Parse(raw)
		if err != nil || u.Port() == "" {
			t.Fatalf("%s: unparsable URL %q", name, raw)
		}
		out = append(out, u.Host)
	}
	return out
}

// outputLog keeps every line the stack printed and wakes waiters on each.
type outputLog struct {
	mu     sync.Mutex
	all    []string
	closed bool
	wake   chan struct{} // closed and replaced on every new line
}

func newOutputLog() *outputLog { return &outputLog{wake: make(chan struct{})} }

func (o *outputLog) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		o.mu.Lock()
		o.all = append(o.all, sc.Text())
		close(o.wake)
		o.wake = make(chan struct{})
		o.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
	o.mu.Lock()
	o.closed = true
	close(o.wake)
	o.wake = make(chan struct{})
	o.mu.Unlock()
}

func (o *outputLog) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.all...)
}

func (o *outputLog) text() string { return strings.Join(o.lines(), "\n") }

// waitFor waits until cond holds for the lines so far, the output ends, or
// timeout passes.
func (o *outputLog) waitFor(timeout time.Duration, cond func([]string) bool) (bool, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		lines, closed, wake := append([]string(nil), o.all...), o.closed, o.wake
		o.mu.Unlock()
		if cond(lines) {
			return true, nil
		}
		if closed {
			return false, errors.New("the output ended")
		}
		select {
		case <-wake:
		case <-deadline.C:
			return false, fmt.Errorf("timed out after %s", timeout)
		}
	}
}

// printedTraces splits the output into the trace trees the stack printed,
// keyed by trace id (a trace printed again replaces its earlier tree).
func printedTraces(lines []string) map[string]string {
	out := map[string]string{}
	var id string
	var tree []string
	flush := func() {
		if id != "" {
			out[id] = strings.Join(tree, "\n")
		}
		id, tree = "", nil
	}
	for _, line := range lines {
		switch {
		case strings.HasPrefix(line, "trace "):
			flush()
			id = strings.Fields(line)[1]
			tree = []string{line}
		case id != "" && !strings.HasPrefix(line, "devstack:") && !strings.Contains(line, " | "):
			tree = append(tree, line)
		default:
			flush()
		}
	}
	flush()
	return out
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
