package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const strongToken = "7c1e9a4f2b8d6e0a3c5f7b9d1e3a5c7f"

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestConsoleOutsideDevModeRefusesToStartWithoutAStrongToken: a console
// pointed at a real deployment (no CONSOLE_DEV_MODE) does not start
// without a token, nor with a short, repetitive or demo one, and says
// which variable to set; with a strong one, given as a file as secrets
// reach containers, it starts. A dev stack's console needs none.
func TestConsoleOutsideDevModeRefusesToStartWithoutAStrongToken(t *testing.T) {
	for _, tc := range []struct {
		name, token, want string
	}{
		{"no token", "", "CONSOLE_TOKEN (or CONSOLE_TOKEN_FILE) is required outside dev mode"},
		{"short", "s3cret-token", "CONSOLE_TOKEN too weak"},
		{"repetitive", strings.Repeat("ab", 20), "CONSOLE_TOKEN too weak"},
		{"demo", "payonce-demo-console-token-0123456789", "a published demo value"},
	} {
		_, err := loadConfig(envOf(map[string]string{"CONSOLE_TOKEN": tc.token}))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	file := filepath.Join(t.TempDir(), "console-token")
	if err := os.WriteFile(file, []byte(strongToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(envOf(map[string]string{"CONSOLE_TOKEN_FILE": file}))
	if err != nil || cfg.Token != strongToken {
		t.Fatalf("a strong token from CONSOLE_TOKEN_FILE: %v (token %q)", err, cfg.Token)
	}
	if cfg, err := loadConfig(envOf(map[string]string{"CONSOLE_DEV_MODE": "true"})); err != nil || cfg.Token != "" {
		t.Fatalf("a dev stack's console without a token: %v", err)
	}
}

// TestConsoleProcessAsksForItsToken starts the console as its command does
// (run), outside dev mode with a token, and asks it for its view: without
// the token 401, with it 200. It shows the wiring, not only the handler.
func TestConsoleProcessAsksForItsToken(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, envOf(map[string]string{
			"CONSOLE_ADDR":             "127.0.0.1:0",
			"CONSOLE_TOKEN":            strongToken,
			"CONSOLE_COORDINATOR_URLS": "http://127.0.0.1:1", // nothing there: the view shows it unreachable
			"CONSOLE_INTERVAL":         "1h",
			"OTEL_TRACES_EXPORTER":     "none",
		}), w)
		w.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	url := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var rec struct{ Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "console listening" {
				url <- rec.URL
			}
		}
	}()
	var base string
	select {
	case base = <-url:
	case err := <-done:
		t.Fatalf("the console stopped before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the console did not log where it listens within 30 s")
	}

	get := func(withToken bool) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/view", nil)
		if withToken {
			req.SetBasicAuth("operator", strongToken)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(false); code != http.StatusUnauthorized {
		t.Fatalf("GET /api/view without the token: %d, want 401", code)
	}
	if code := get(true); code != http.StatusOK {
		t.Fatalf("GET /api/view with the token: %d, want 200", code)
	}
}
