package httpkit

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Check probes one dependency for readiness. Probe returns nil when the
// dependency answers; it must honour ctx's deadline.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Healthz answers liveness: the process is up and its HTTP server serves.
// It deliberately checks no dependency, so an orchestrator never restarts a
// healthy process because its database blinked.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}

// Readyz answers readiness: 200 when every check passes within timeout,
// otherwise 503 problem+json naming each failing dependency. Checks run
// concurrently so one slow dependency costs one timeout, not the sum.
func Readyz(timeout time.Duration, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		results := make(map[string]string, len(checks))
		var mu sync.Mutex
		var wg sync.WaitGroup
		failed := false
		for _, c := range checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status := "ok"
				if err := c.Probe(ctx); err != nil {
					status = err.Error()
				}
				mu.Lock()
				defer mu.Unlock()
				results[c.Name] = status
				failed = failed || status != "ok"
			}()
		}
		wg.Wait()
		if failed {
			WriteProblem(w, Problem{
				Type:    ProblemTypeBase + "not-ready",
				Title:   http.StatusText(http.StatusServiceUnavailable),
				Status:  http.StatusServiceUnavailable,
				Detail:  "a dependency is not reachable",
				TraceID: traceID(r.Context()),
				Checks:  results,
			})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "ready", "checks": results})
	})
}
