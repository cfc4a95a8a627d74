package http_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/services/console"
	consolehttp "github.com/payonce/payonce/services/console/http"
)

// TestConsoleAnswersOnlyItsOwnHostNames tries DNS rebinding: a page served
// from an attacker's name that re-resolves to the console's address is
// same-origin with it, so the browser lets it read the view and POST the
// actions; what gives it away is the Host header, which still carries the
// attacker's name. Those requests are refused with 421 problem+json, the
// view is not in the answer, and the action (killing the Raft leader, in
// dev mode) never runs. The names the console is meant to be reached by
// (loopback addresses, localhost, CONSOLE_ALLOWED_HOSTS) are served.
func TestConsoleAnswersOnlyItsOwnHostNames(t *testing.T) {
	stack := &fakeStack{}
	c := console.New(console.Config{Stack: stack, DevMode: true, Control: fakeControl{stack}, Interval: time.Hour})
	c.Refresh(context.Background())
	srv := httptest.NewServer(consolehttp.AllowHosts([]string{"Console.Internal"}, consolehttp.NewHandler(c, true, nil)))
	t.Cleanup(srv.Close)

	send := func(method, path, host string) (int, string, []byte) {
		t.Helper()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{}`)
		}
		req, err := http.NewRequest(method, srv.URL+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]

	for _, host := range []string{"attacker.example" + port, "attacker.example", "127.0.0.1.attacker.example" + port, "localhost.attacker.example", "console.internal.evil" + port} {
		for _, route := range []struct{ method, path string }{
			{http.MethodGet, "/"}, {http.MethodGet, "/api/view"}, {http.MethodGet, "/api/ring/lookup?customer=alice"},
			{http.MethodPost, "/api/actions/kill-leader"},
		} {
			code, ctype, b := send(route.method, route.path, host)
			var p struct{ Type string }
			if code != http.StatusMisdirectedRequest || !strings.HasPrefix(ctype, "application/problem+json") ||
				json.Unmarshal(b, &p) != nil || p.Type != consolehttp.HostNotAllowedType {
				t.Errorf("%s %s with Host %q: %d %s %s, want 421 %s", route.method, route.path, host, code, ctype, b, consolehttp.TypeHostNotAllowed)
			}
			if strings.Contains(string(b), "coordinators") {
				t.Errorf("%s %s with Host %q: the answer carries the view: %s", route.method, route.path, host, b)
			}
		}
	}
	if changes := stack.Changes(); len(changes) != 0 {
		t.Fatalf("a refused request changed the stack: %v", changes)
	}

	for _, host := range []string{"127.0.0.1" + port, "localhost" + port, "LOCALHOST", "[::1]" + port, "127.0.0.2", "console.internal" + port, "console.internal."} {
		if code, _, b := send(http.MethodGet, "/api/view", host); code != http.StatusOK {
			t.Errorf("GET /api/view with Host %q: %d %s, want 200", host, code, b)
		}
	}
	if code, _, b := send(http.MethodPost, "/api/actions/kill-leader", "localhost"+port); code != http.StatusOK {
		t.Fatalf("kill-leader from localhost: %d %s", code, b)
	}
	if changes := stack.Changes(); len(changes) != 1 {
		t.Fatalf("the allowed action: changes %v, want one", changes)
	}
}
