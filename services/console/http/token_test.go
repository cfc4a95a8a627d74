package http_test

import (
	"context"
	"encoding/base64"
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

const consoleToken = "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e"

// TestConsoleWithATokenAnswersOnlyItsHolder is the console outside dev
// mode, as a real deployment runs it, tried by someone who reaches its
// port without the token: no credentials, a wrong token, the right token's
// prefix, the token as a user name, an empty password. Each gets 401 with
// a Basic challenge and a problem document, and none of the answers carries
// the view (the locks, holders and tokens the coordinator shows only the
// operator) or starts the event stream. A dev-mode console behind a token
// runs no action for them either. The token, as a Basic password under any
// user name or as a Bearer token, is served.
func TestConsoleWithATokenAnswersOnlyItsHolder(t *testing.T) {
	stack := &fakeStack{}
	for _, devMode := range []bool{false, true} {
		c := console.New(console.Config{Stack: stack, DevMode: devMode, Control: fakeControl{stack}, Interval: time.Hour})
		c.Refresh(context.Background())
		srv := httptest.NewServer(consolehttp.RequireToken(consoleToken, consolehttp.NewHandler(c, devMode, nil)))
		t.Cleanup(srv.Close)

		send := func(method, path, authorization string) *http.Response {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t.Cleanup(cancel)
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader(`{}`)
			}
			req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
			if err != nil {
				t.Fatal(err)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}
		basic := func(user, password string) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
		}

		for _, auth := range []string{
			"", basic("operator", "wrong-token-of-the-same-length-xx"), basic("operator", consoleToken[:31]),
			basic(consoleToken, ""), basic("operator", consoleToken+"x"), "Bearer " + consoleToken[1:], "Bearer", "Token " + consoleToken,
		} {
			for _, route := range []struct{ method, path string }{
				{http.MethodGet, "/"}, {http.MethodGet, "/api/view"}, {http.MethodGet, "/api/events"},
				{http.MethodGet, "/api/ring/lookup?customer=alice"}, {http.MethodPost, "/api/actions/kill-leader"},
			} {
				resp := send(route.method, route.path, auth)
				b, _ := io.ReadAll(resp.Body)
				var p struct{ Type string }
				if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") ||
					json.Unmarshal(b, &p) != nil || p.Type != consolehttp.TokenRequiredType {
					t.Errorf("dev mode %v, %s %s with %q: %d %s %s, want 401 %s", devMode, route.method, route.path, auth,
						resp.StatusCode, resp.Header.Get("Content-Type"), b, consolehttp.TypeTokenRequired)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("%s %s: WWW-Authenticate %q, want a Basic challenge (the browser's prompt)", route.method, route.path, resp.Header.Get("WWW-Authenticate"))
				}
				if strings.Contains(string(b), "coordinators") {
					t.Errorf("%s %s with %q: the answer carries the view: %s", route.method, route.path, auth, b)
				}
			}
		}
		if changes := stack.Changes(); len(changes) != 0 {
			t.Fatalf("dev mode %v: a refused request changed the stack: %v", devMode, changes)
		}

		for _, auth := range []string{basic("operator", consoleToken), basic("", consoleToken), "Bearer " + consoleToken} {
			resp := send(http.MethodGet, "/api/view", auth)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "coordinators") {
				t.Errorf("dev mode %v, GET /api/view with %q: %d %s, want 200 and the view", devMode, auth, resp.StatusCode, b)
			}
		}
		if resp := send(http.MethodGet, "/api/events", basic("operator", consoleToken)); resp.StatusCode != http.StatusOK ||
			resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("dev mode %v, the event stream with the token: %d %q", devMode, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// With the token, the dev-mode console's action runs (and only then).
	c := console.New(console.Config{Stack: stack, DevMode: true, Control: fakeControl{stack}, Interval: time.Hour})
	c.Refresh(context.Background())
	srv := httptest.NewServer(consolehttp.RequireToken(consoleToken, consolehttp.NewHandler(c, true, nil)))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/actions/kill-leader", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("operator", consoleToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(stack.Changes()) != 1 {
		t.Fatalf("kill-leader with the token: %d, changes %v, want 200 and one", resp.StatusCode, stack.Changes())
	}
}
