package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/otlpsink"
	"github.com/payonce/payonce/internal/proc"
)

// managed is one process of the stack that the control endpoint may stop,
// kill, pause and start again under the same name, environment and data.
type managed struct {
	name, bin, pidFile string
	env                []string
	out                io.Writer

	mu     sync.Mutex
	p      *proc.Process
	paused bool
	resume *time.Timer
}

func (m *managed) start() (*proc.Process, error) {
	p, err := proc.Start(m.name, m.bin, m.env, m.out)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(m.pidFile, fmt.Appendf(nil, "%d\n", p.Pid()), 0o644); err != nil {
		p.Kill()
		return nil, err
	}
	m.p = p
	return p, nil
}

func (m *managed) running() bool {
	select {
	case <-m.p.Done():
		return false
	default:
		return true
	}
}

// shutdown is the stack's stop of this process: a paused one is resumed
// first, since a stopped process cannot act on SIGTERM.
func (m *managed) shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cont()
	err := m.p.Stop(stopGrace)
	_ = os.Remove(m.pidFile)
	if err != nil && !exitedOnSignal(err) {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	return nil
}

// cont resumes a paused process; m.mu is held.
func (m *managed) cont() {
	if m.resume != nil {
		m.resume.Stop()
		m.resume = nil
	}
	if m.paused {
		_ = resumeProcess(m.p.Pid())
		m.paused = false
	}
}

// Control errors, answered as 4xx.
var (
	errUnknownProcess  = errors.New("no such process in the dev stack")
	errRunning         = errors.New("the process is running")
	errNotRunning      = errors.New("the process is not running")
	errUnknownDatabase = errors.New("no such database in the dev stack")
	errBadRequest      = errors.New("bad request")
)

func (m *managed) restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running() {
		return errRunning
	}
	_, err := m.start()
	return err
}

func (m *managed) kill() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running() {
		return errNotRunning
	}
	m.cont()
	m.p.Kill()
	return nil
}

func (m *managed) stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running() {
		return errNotRunning
	}
	m.cont()
	if err := m.p.Stop(stopGrace); err != nil && !exitedOnSignal(err) {
		return err
	}
	return nil
}

// pause freezes the process with SIGSTOP for d, then resumes it: to the
// rest of the stack it looks like a long GC pause or a VM stall, the case
// fencing tokens exist for.
func (m *managed) pause(d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.running() {
		return errNotRunning
	}
	if m.paused {
		return errors.New("the process is already paused")
	}
	if err := pauseProcess(m.p.Pid()); err != nil {
		return err
	}
	m.paused = true
	m.resume = time.AfterFunc(d, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.resume = nil
		m.cont()
	})
	return nil
}

type processState struct {
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
	Running bool   `json:"running"`
	Paused  bool   `json:"paused"`
}

// controlHandler is the dev stack's control endpoint. It exists only in the
// dev stack, listens on loopback, and is what the console's process
// buttons call:
//
//	GET  /processes                     every process: pid, running, paused
//	POST /kill-leader                   SIGKILL the Raft leader's process
//	POST /processes/{name}/start        start a stopped or killed process again
//	POST /processes/{name}/stop         SIGTERM, wait for it to exit
//	POST /processes/{name}/pause?seconds=N   SIGSTOP for N seconds (1-120), then SIGCONT
//	GET  /databases                     each service's database: stopped or not, until when
//	POST /databases/{name}/stop?seconds=N    refuse connections to it for N seconds (1-600)
//	POST /databases/{name}/start        accept connections again now
//	GET  /traces/{id}                   a trace the built-in sink holds, in the dump format
//	                                    (with Jaeger, ask its API instead)
func (s *stack) controlHandler(coordinatorURLs []string) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	fail := func(w http.ResponseWriter, err error) {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, errUnknownProcess), errors.Is(err, errUnknownDatabase):
			status = http.StatusNotFound
		case errors.Is(err, errBadRequest):
			status = http.StatusBadRequest
		case errors.Is(err, errRunning), errors.Is(err, errNotRunning), errors.Is(err, errStopped), errors.Is(err, errNotStopped):
			status = http.StatusConflict
		}
		reply(w, status, map[string]string{"error": err.Error()})
	}
	lookup := func(r *http.Request) (*managed, error) {
		m := s.managed[r.PathValue("name")]
		if m == nil {
			return nil, fmt.Errorf("%q: %w", r.PathValue("name"), errUnknownProcess)
		}
		return m, nil
	}
	mux.HandleFunc("GET /processes", func(w http.ResponseWriter, r *http.Request) {
		out := []processState{}
		for _, name := range sortedNames(s.managed) {
			m := s.managed[name]
			m.mu.Lock()
			out = append(out, processState{Name: name, Pid: m.p.Pid(), Running: m.running(), Paused: m.paused})
			m.mu.Unlock()
		}
		reply(w, http.StatusOK, map[string]any{"processes": out})
	})
	mux.HandleFunc("POST /kill-leader", func(w http.ResponseWriter, r *http.Request) {
		id, err := currentLeader(r.Context(), s.admin, coordinatorURLs)
		if err != nil {
			fail(w, err)
			return
		}
		m := s.managed["coordinator-"+id]
		if m == nil {
			fail(w, fmt.Errorf("leader %q: %w", id, errUnknownProcess))
			return
		}
		if err := m.kill(); err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]string{"killed": m.name})
	})
	mux.HandleFunc("GET /traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		var spans []otlpsink.Span
		if s.sink != nil {
			spans = s.sink.Trace(r.PathValue("id"))
		}
		if len(spans) == 0 {
			reply(w, http.StatusNotFound, map[string]string{"error": "no such trace in the built-in sink"})
			return
		}
		reply(w, http.StatusOK, dumpOf(r.PathValue("id"), spans))
	})
	action := func(do func(*managed, *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			m, err := lookup(r)
			if err == nil {
				err = do(m, r)
			}
			if err != nil {
				fail(w, err)
				return
			}
			reply(w, http.StatusOK, map[string]string{"done": m.name})
		}
	}
	mux.HandleFunc("POST /processes/{name}/start", action(func(m *managed, _ *http.Request) error { return m.restart() }))
	mux.HandleFunc("POST /processes/{name}/stop", action(func(m *managed, _ *http.Request) error { return m.stop() }))
	mux.HandleFunc("POST /processes/{name}/pause", action(func(m *managed, r *http.Request) error {
		n, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || n < 1 || n > 120 {
			return fmt.Errorf("seconds=%q: want 1 to 120: %w", r.URL.Query().Get("seconds"), errBadRequest)
		}
		return m.pause(time.Duration(n) * time.Second)
	}))
	databaseAction := func(do func(*database, *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			db := s.databases[r.PathValue("name")]
			if db == nil {
				fail(w, fmt.Errorf("%q: %w", r.PathValue("name"), errUnknownDatabase))
				return
			}
			if err := do(db, r); err != nil {
				fail(w, err)
				return
			}
			reply(w, http.StatusOK, db.state())
		}
	}
	mux.HandleFunc("GET /databases", func(w http.ResponseWriter, r *http.Request) {
		out := []databaseState{}
		for _, name := range slices.Sorted(maps.Keys(s.databases)) {
			out = append(out, s.databases[name].state())
		}
		reply(w, http.StatusOK, map[string]any{"databases": out})
	})
	mux.HandleFunc("POST /databases/{name}/stop", databaseAction(func(db *database, r *http.Request) error {
		n, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		if err != nil || n < 1 || n > 600 {
			return fmt.Errorf("seconds=%q: want 1 to 600: %w", r.URL.Query().Get("seconds"), errBadRequest)
		}
		return db.stop(r.Context(), time.Duration(n)*time.Second)
	}))
	mux.HandleFunc("POST /databases/{name}/start", databaseAction(func(db *database, r *http.Request) error {
		return db.start(r.Context())
	}))
	return mux
}

func sortedNames(m map[string]*managed) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// currentLeader asks the coordinators which node leads: the one that says
// it is the leader in its own status. client is the operator's (the
// coordinators answer only callers with a certificate).
func currentLeader(ctx context.Context, client *http.Client, urls []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, "GET", u+"/v1/cluster/node", nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			continue // a node already killed
		}
		var st struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.State == "Leader" {
			return st.ID, nil
		}
	}
	return "", errors.New("no coordinator says it is the leader now (an election may be running): try again")
}

// startConsole starts the control endpoint and the console, in dev mode,
// pointed at it and at the rest of the stack.
func (s *stack) startConsole(ctx context.Context, cfg config, bin string, coordURLs []string, bankURL string, pki *devPKI, common []string) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.ControlPort))
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	srv := &http.Server{Handler: s.controlHandler(coordURLs), ReadHeaderTimeout: 5 * time.Second}
	s.onStop(func() error {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(shutdownCtx)
		// Shutdown closes the listener when Serve ran; when it never did
		// (the console failed to start), it is still open. Closing it first
		// made Shutdown fail with "use of closed network connection".
		_ = ln.Close()
		return err
	})
	controlURL := "http://" + ln.Addr().String()

	fmt.Fprintln(s.out, "devstack: starting the console")
	consoleURL := fmt.Sprintf("http://127.0.0.1:%d", cfg.ConsolePort)
	env := append([]string{
		fmt.Sprintf("CONSOLE_ADDR=127.0.0.1:%d", cfg.ConsolePort),
		"CONSOLE_COORDINATOR_URLS=" + strings.Join(coordURLs, ","),
		"CONSOLE_BANK_URL=" + bankURL,
		"CONSOLE_INSTANCE_URLS=" + s.instanceURLs(),
		"CONSOLE_API_KEY=" + DemoAPIKey,
		"CONSOLE_DEV_MODE=true",
		"CONSOLE_OUTAGE_FOR=" + cfg.ConsoleOutageFor.String(),
		"CONSOLE_CONTROL_URL=" + controlURL,
		"CONSOLE_JAEGER_URL=" + s.trace.jaegerURL,
		"CONSOLE_TRACES_URL=" + tracesURL(s.trace.jaegerURL, controlURL),
	}, append(pki.env(identity.ID{Service: identity.Console, Instance: "console"}), common...)...)
	p, err := s.startProcess("console", bin, env)
	if err != nil {
		return err
	}
	// Served only now: every process is registered, so the handler reads
	// s.managed without a lock (it is never written again).
	go func() { _ = srv.Serve(ln) }()
	if err := proc.WaitReady(ctx, p, consoleURL+"/readyz"); err != nil {
		return err
	}
	s.urls = append(s.urls, namedURL{"console", consoleURL}, namedURL{"devstack control", controlURL})
	return nil
}

// tracesURL is where the console fetches a trace to draw it: Jaeger's query
// API when Jaeger runs, else the control endpoint, which reads the sink.
func tracesURL(jaegerURL, controlURL string) string {
	if jaegerURL != "" {
		return jaegerURL + "/api/traces"
	}
	return controlURL + "/traces"
}

// instanceURLs is CONSOLE_INSTANCE_URLS: each orders and payments
// instance's public API (the membership holds their internal listeners,
// which only peers of the same service may call).
func (s *stack) instanceURLs() string {
	var pairs []string
	for _, u := range s.urls {
		if strings.HasPrefix(u.name, "orders-") || strings.HasPrefix(u.name, "payments-") {
			pairs = append(pairs, u.name+"="+u.url)
		}
	}
	return strings.Join(pairs, ",")
}
