package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTargetLoadsARunningStack: -target spreads its clients over the
// payments URLs it is given, sends the caller's key, never repeats an
// Idempotency-Key (within a run or across two runs, which would measure
// replays instead of new payments) and prints a row per client count.
func TestTargetLoadsARunningStack(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	hits := map[string]int{}
	stub := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer k1" || r.Method != http.MethodPost || r.URL.Path != "/v1/payments" {
				http.Error(w, "unexpected request", http.StatusBadRequest)
				return
			}
			mu.Lock()
			keys[r.Header.Get("Idempotency-Key")]++
			hits[name]++
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		}))
	}
	a, b := stub("a"), stub("b")
	defer a.Close()
	defer b.Close()
	run := targetRun{bases: []string{a.URL, b.URL}, apiKey: "k1", clients: []int{1, 4}, duration: 200 * time.Millisecond, customers: 10}
	var out strings.Builder
	for range 2 {
		if err := runTarget(context.Background(), &out, run); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, n := range keys {
		if n != 1 {
			t.Fatalf("Idempotency-Key %q sent %d times", k, n)
		}
	}
	if hits["a"] == 0 || hits["b"] == 0 {
		t.Fatalf("requests per instance %v: the clients were not spread over both", hits)
	}
	if rows := strings.Count(out.String(), "\n| 1 | ") + strings.Count(out.String(), "\n| 4 | "); rows != 4 {
		t.Fatalf("want a row per client count per run (4), got %d:\n%s", rows, out.String())
	}
}

// TestTargetStopsOnARefusal: a stack that refuses the payments (a wrong
// key, a quota) fails the run with the status, instead of printing a rate
// of refusals.
func TestTargetStopsOnARefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	err := runTarget(context.Background(), &strings.Builder{}, targetRun{bases: []string{srv.URL}, apiKey: "wrong", clients: []int{1}, duration: 100 * time.Millisecond, customers: 1})
	if err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Fatalf("got %v, want the run to fail with status 401", err)
	}
}
