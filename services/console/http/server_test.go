package http_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/console"
	consolehttp "github.com/payonce/payonce/services/console/http"
)

// fakeStack stands in for the stack's APIs in handler tests and records
// every call that would change something.
type fakeStack struct {
	mu      sync.Mutex
	changes []string
	faults  console.BankFaults
}

func (f *fakeStack) changed(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, what)
}

func (f *fakeStack) Changes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.changes...)
}

func (f *fakeStack) CoordinatorURLs() []string { return []string{"http://c1"} }
func (f *fakeStack) NodeStatus(context.Context, string) (console.NodeStatus, error) {
	return console.NodeStatus{ID: "c1", State: "Leader", Term: 2, LeaderID: "c1", Voters: []string{"c1"}}, nil
}
func (f *fakeStack) Membership(_ context.Context, service string) (console.Membership, error) {
	r, err := ring.Build([]ring.Member{{Name: service + "-1"}, {Name: service + "-2"}})
	return console.Membership{Service: service, Version: 1, Ring: r,
		Instances: []console.Instance{{Name: service + "-1", Addr: "http://a"}, {Name: service + "-2", Addr: "http://b"}}}, err
}
func (f *fakeStack) Metrics(_ context.Context, inst console.Instance) (console.InstanceMetrics, error) {
	return console.InstanceMetrics{Idempotency: console.IdempotencyCounts{Instance: inst.Name}}, nil
}
func (f *fakeStack) CustomerOrders(context.Context, string, string) ([]console.Order, error) {
	return nil, nil
}
func (f *fakeStack) CustomerPayments(context.Context, string, string) ([]console.Payment, error) {
	return nil, nil
}
func (f *fakeStack) CreateOrder(context.Context, string, string, string, []byte) (console.OrderReply, error) {
	f.changed("create order")
	return console.OrderReply{Answer: console.AnswerFirst, Order: console.Order{ID: "o1", Status: "paid", PaymentID: "p1"}}, nil
}
func (f *fakeStack) GetOrder(context.Context, string, string) (console.Order, error) {
	return console.Order{ID: "o1", Status: "paid", PaymentID: "p1"}, nil
}
func (f *fakeStack) BankFaults(context.Context) (console.BankFaults, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults, nil
}
func (f *fakeStack) SetBankFaults(_ context.Context, bf console.BankFaults) error {
	f.changed("bank faults")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = bf
	return nil
}
func (f *fakeStack) BankCaptures(context.Context, string) (int, error) { return 1, nil }
func (f *fakeStack) Trace(_ context.Context, id string) ([]byte, error) {
	return []byte(`{"trace_id":"` + id + `","spans":[{"span_id":"a1","service":"orders","name":"POST /v1/orders",
		"start":"2026-12-02T10:00:00Z","end":"2026-12-02T10:00:00.040Z"},{"span_id":"b2","parent_id":"a1","service":"bank",
		"name":"POST /v1/authorizations","start":"2026-12-02T10:00:00.010Z","end":"2026-12-02T10:00:00.020Z"}]}`), nil
}

// fakeControl records every process action.
type fakeControl struct{ stack *fakeStack }

func (c fakeControl) Processes(context.Context) ([]console.Process, error) { return nil, nil }
func (c fakeControl) KillLeader(context.Context) (string, error) {
	c.stack.changed("kill leader")
	return "coordinator-c1", nil
}
func (c fakeControl) Start(_ context.Context, name string) error {
	c.stack.changed("start " + name)
	return nil
}
func (c fakeControl) Stop(_ context.Context, name string) error {
	c.stack.changed("stop " + name)
	return nil
}
func (c fakeControl) Pause(_ context.Context, name string, _ time.Duration) error {
	c.stack.changed("pause " + name)
	return nil
}
func (c fakeControl) Databases(context.Context) ([]console.Database, error) { return nil, nil }
func (c fakeControl) StopDatabase(_ context.Context, name string, _ time.Duration) error {
	c.stack.changed("stop database " + name)
	return nil
}
func (c fakeControl) StartDatabase(_ context.Context, name string) error {
	c.stack.changed("start database " + name)
	return nil
}

func newServer(t *testing.T, devMode, control bool) (*httptest.Server, *fakeStack) {
	t.Helper()
	stack := &fakeStack{}
	cfg := console.Config{Stack: stack, DevMode: devMode, Interval: time.Hour}
	if control {
		cfg.Control = fakeControl{stack}
	}
	c := console.New(cfg)
	c.Refresh(context.Background())
	srv := httptest.NewServer(consolehttp.NewHandler(c, devMode, nil))
	t.Cleanup(srv.Close)
	return srv, stack
}

func post(t *testing.T, url, contentType, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func actionPath(route string) string {
	_, path, _ := strings.Cut(route, " ")
	return strings.ReplaceAll(path, "{name}", "payments-1")
}

// TestEveryActionIsRefusedOutsideDevMode sends every action route, with a
// valid body and with garbage, to a console that is not in dev mode but
// does have a dev stack control endpoint: each is refused with a 403
// problem, and nothing reaches the stack.
func TestEveryActionIsRefusedOutsideDevMode(t *testing.T) {
	srv, stack := newServer(t, false, true)
	bodies := map[string]string{
		"faults": `{"lose_next":1}`, "storm": `{"requests":5,"customer_id":"eve"}`,
	}
	if len(consolehttp.ActionRoutes) != 8 {
		t.Fatalf("ActionRoutes lists %d routes; this test was written for 8: check the new ones", len(consolehttp.ActionRoutes))
	}
	for _, route := range consolehttp.ActionRoutes {
		path := actionPath(route)
		valid := bodies[path[strings.LastIndexByte(path, '/')+1:]]
		if valid == "" {
			valid = "{}"
		}
		for _, tc := range []struct{ contentType, body string }{
			{"application/json", valid}, {"application/json", `{"requests":`}, {"text/plain", "x"},
		} {
			st, h, b := post(t, srv.URL+path, tc.contentType, tc.body)
			if st != http.StatusForbidden || h.Get("Content-Type") != httpkit.ProblemContentType {
				t.Fatalf("%s %q: %d %s %s, want 403 problem", route, tc.body, st, h.Get("Content-Type"), b)
			}
			var p httpkit.Problem
			if err := json.Unmarshal(b, &p); err != nil || p.Type != consolehttp.DevModeOffType || !strings.Contains(p.Detail, "CONSOLE_DEV_MODE") {
				t.Fatalf("%s: problem %s (%v)", route, b, err)
			}
		}
	}
	if got := stack.Changes(); len(got) != 0 {
		t.Fatalf("refused actions still changed the stack: %v", got)
	}
	// Reads stay open.
	resp, err := http.Get(srv.URL + "/api/view")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("view: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestDomainRefusesActionsOutsideDevMode checks the second line of defence:
// the domain refuses too, whoever calls it.
func TestDomainRefusesActionsOutsideDevMode(t *testing.T) {
	stack := &fakeStack{}
	c := console.New(console.Config{Stack: stack, Control: fakeControl{stack}})
	ctx := context.Background()
	one := 1
	errsOf := map[string]error{}
	_, errsOf["faults"] = c.SetBankFaults(ctx, console.FaultsRequest{LoseNext: &one})
	_, errsOf["storm"] = c.StartStorm(ctx, console.StormRequest{Requests: 3, CustomerID: "eve"})
	_, errsOf["kill"] = c.KillLeader(ctx)
	errsOf["start"] = c.StartProcess(ctx, "payments-1")
	errsOf["stop"] = c.StopProcess(ctx, "payments-1")
	errsOf["pause"] = c.PauseProcess(ctx, "payments-1")
	errsOf["stop database"] = c.StopDatabase(ctx, "orders")
	errsOf["start database"] = c.StartDatabase(ctx, "orders")
	for name, err := range errsOf {
		if err != console.ErrDevModeOff {
			t.Errorf("%s: %v, want ErrDevModeOff", name, err)
		}
	}
	if got := stack.Changes(); len(got) != 0 {
		t.Fatalf("refused actions changed the stack: %v", got)
	}
}

// TestBadActionInputIsAProblemAndChangesNothing sends malformed actions to
// a dev-mode console: each gets a 4xx problem and nothing reaches the stack.
func TestBadActionInputIsAProblemAndChangesNothing(t *testing.T) {
	srv, stack := newServer(t, true, true)
	cases := []struct {
		path, contentType, body string
		status                  int
	}{
		{"/api/actions/storm", "application/json", `{"requests":0,"customer_id":"eve"}`, 400},
		{"/api/actions/storm", "application/json", `{"requests":5000,"customer_id":"eve"}`, 400},
		{"/api/actions/storm", "application/json", `{"requests":5,"customer_id":"<script>"}`, 400},
		{"/api/actions/storm", "application/json", `{"requests":5,"customer_id":"eve","card":"abc"}`, 400},
		{"/api/actions/storm", "application/json", `{"requests":5,"customer_id":"eve","bogus":1}`, 400},
		{"/api/actions/storm", "text/plain", `{"requests":5,"customer_id":"eve"}`, 400},
		{"/api/actions/kill-leader", "", ``, 400},
		{"/api/actions/faults", "application/json", `{"lose_next":-1}`, 400},
		{"/api/actions/faults", "application/json", `{"latency_ms":999999}`, 400},
		{"/api/actions/faults", "application/json", `{"decline_card":"12"}`, 400},
		{"/api/actions/faults", "application/json", `not json`, 400},
		{"/api/actions/processes/bash/stop", "application/json", `{}`, 400},
		{"/api/actions/processes/postgres/pause", "application/json", `{}`, 400},
		{"/api/actions/processes/..%2Fx/start", "application/json", `{}`, 400},
		{"/api/actions/databases/postgres/stop", "application/json", `{}`, 400},
		{"/api/actions/databases/orders-1/start", "application/json", `{}`, 400},
		{"/api/actions/databases/orders/stop", "text/plain", `{}`, 400},
	}
	for _, tc := range cases {
		st, h, b := post(t, srv.URL+tc.path, tc.contentType, tc.body)
		if st != tc.status || h.Get("Content-Type") != httpkit.ProblemContentType {
			t.Errorf("%s %s: %d %s %s, want %d problem", tc.path, tc.body, st, h.Get("Content-Type"), b, tc.status)
		}
	}
	if got := stack.Changes(); len(got) != 0 {
		t.Fatalf("bad input changed the stack: %v", got)
	}
	st, _, b := get(t, srv.URL+"/api/ring/lookup?customer=")
	if st != 400 {
		t.Fatalf("empty lookup: %d %s", st, b)
	}
}

// TestProcessActionsWithoutControlPointAtTheCommands: under compose there is
// no control endpoint; process actions answer 503 and say what to do.
func TestProcessActionsWithoutControlPointAtTheCommands(t *testing.T) {
	srv, _ := newServer(t, true, false)
	for _, path := range []string{"/api/actions/kill-leader", "/api/actions/processes/payments-1/stop", "/api/actions/databases/orders/stop"} {
		st, _, b := post(t, srv.URL+path, "application/json", "{}")
		if st != http.StatusServiceUnavailable || !strings.Contains(string(b), "docker compose") {
			t.Fatalf("%s: %d %s", path, st, b)
		}
	}
}

// TestDevModeActionsReachTheStack: in dev mode the same actions do act.
func TestDevModeActionsReachTheStack(t *testing.T) {
	srv, stack := newServer(t, true, true)
	for _, tc := range []struct{ path, body string }{
		{"/api/actions/faults", `{"lose_next":1,"decline_card":"4242424242424242"}`},
		{"/api/actions/kill-leader", `{}`},
		{"/api/actions/processes/payments-2/stop", `{}`},
		{"/api/actions/processes/payments-2/start", `{}`},
		{"/api/actions/processes/payments-1/pause", `{}`},
		{"/api/actions/databases/orders/stop", `{}`},
		{"/api/actions/databases/orders/start", `{}`},
	} {
		if st, _, b := post(t, srv.URL+tc.path, "application/json", tc.body); st/100 != 2 {
			t.Fatalf("%s: %d %s", tc.path, st, b)
		}
	}
	want := []string{"bank faults", "kill leader", "stop payments-2", "start payments-2", "pause payments-1",
		"stop database orders", "start database orders"}
	if got := stack.Changes(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("changes %v, want %v", got, want)
	}
	if f, _ := stack.BankFaults(context.Background()); f.LoseNext != 1 || len(f.DeclineCards) != 1 {
		t.Fatalf("faults %+v", f)
	}
}

// TestEventsStreamViews reads the event stream: the first event is the
// current view, as JSON, and the page's assets are served.
func TestEventsStreamViews(t *testing.T) {
	srv, _ := newServer(t, false, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		if line == "event: view" {
			event = line
			continue
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok && event != "" {
			var v console.View
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				t.Fatal(err)
			}
			if v.LeaderID != "c1" || len(v.Rings) != 2 || len(v.Rings[0].Members) != 2 || v.DevMode {
				t.Fatalf("view %+v", v)
			}
			break
		}
	}
	if event == "" {
		t.Fatalf("no view event: %v", sc.Err())
	}
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		if st, _, b := get(t, srv.URL+path); st != 200 || len(b) == 0 {
			t.Fatalf("%s: %d", path, st)
		}
	}
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestTraceIsDrawnInline: a trace id gives a waterfall SVG of its spans; a
// malformed id is a 400 problem and nothing is fetched.
func TestTraceIsDrawnInline(t *testing.T) {
	srv, _ := newServer(t, false, false)
	st, h, b := get(t, srv.URL+"/api/traces/4bf92f3577b34da6a3ce929d0e0e4736")
	if st != 200 || h.Get("Content-Type") != "image/svg+xml" || !strings.Contains(string(b), "<svg") ||
		!strings.Contains(string(b), "POST /v1/authorizations") {
		t.Fatalf("trace: %d %s %.300s", st, h.Get("Content-Type"), b)
	}
	for _, bad := range []string{"nope", "4BF92F3577B34DA6A3CE929D0E0E4736", "4bf92f3577b34da6a3ce929d0e0e473"} {
		if st, h, b := get(t, srv.URL+"/api/traces/"+bad); st != 400 || h.Get("Content-Type") != httpkit.ProblemContentType {
			t.Fatalf("trace %q: %d %s", bad, st, b)
		}
	}
}
