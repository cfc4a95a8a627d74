//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

const consoleURL = "http://127.0.0.1:8070"

// TestConsoleAnswersAndStreams: the compose stack's console serves its page
// and streams views that show the three coordinators, a leader and both
// rings with their two instances; a process action, which compose gives the
// console no way to perform, answers 503 and points at the docker commands.
func TestConsoleAnswersAndStreams(t *testing.T) {
	stack(t)
	if r := call(t, "GET", consoleURL+"/", "", "", nil, nil); r.status != 200 || !strings.Contains(string(r.body), "payonce console") {
		t.Fatalf("GET /: %d %.200s", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", consoleURL+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("events: content type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	views := 0
	var last string
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		views++
		last = data
		var v struct {
			LeaderID     string `json:"leader_id"`
			Coordinators []struct {
				Up bool `json:"up"`
			} `json:"coordinators"`
			Rings []struct {
				Service string `json:"service"`
				Members []struct {
					Name string `json:"name"`
				} `json:"members"`
			} `json:"rings"`
		}
		if err := json.Unmarshal([]byte(data), &v); err != nil {
			t.Fatalf("view %d: %v", views, err)
		}
		up := 0
		for _, c := range v.Coordinators {
			if c.Up {
				up++
			}
		}
		// The first views may come before every instance registered; a
		// streamed view that shows all of them is the pass.
		if views >= 2 && v.LeaderID != "" && up == 3 && len(v.Rings) == 2 &&
			len(v.Rings[0].Members) == 2 && len(v.Rings[1].Members) == 2 {
			break
		}
	}
	if ctx.Err() != nil || sc.Err() != nil {
		t.Fatalf("no streamed view showed 3 coordinators and 2x2 instances after %d views (%v); last: %.500s", views, sc.Err(), last)
	}
	r := call(t, "POST", consoleURL+"/api/actions/kill-leader", "", "", map[string]any{}, nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "docker compose") {
		t.Fatalf("kill-leader under compose: %d %s", r.status, r.body)
	}
}
