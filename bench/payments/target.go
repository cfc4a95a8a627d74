package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// targetRun is a load on a stack that already runs (-target): nothing is
// started, and the design is whatever the stack was started with.
type targetRun struct {
	bases     []string // payments URLs; the clients are spread over them
	apiKey    string
	console   string // optional: the stack's console, for the coordinators' commit index
	clients   []int
	duration  time.Duration
	customers int
}

func runTarget(ctx context.Context, stdout io.Writer, t targetRun) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 30 * time.Second}
	// Keys unique to this run, so a second run against the same stack
	// makes new payments instead of replaying the first run's.
	run := fmt.Sprintf("bench-%x", rand.Uint64())
	var seq atomic.Int64
	newKey := func() (string, string) {
		return fmt.Sprintf("%s-%d", run, seq.Add(1)), fmt.Sprintf("cust-%d", rand.IntN(t.customers))
	}
	if _, err := load(ctx, client, t.bases, t.apiKey, 4, time.Second, newKey); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Fprintf(stdout, "\nPOST /v1/payments against %s, new payments (new Idempotency-Key each), %s per row, spread over %d customers\n\n",
		strings.Join(t.bases, ", "), t.duration, t.customers)
	fmt.Fprintln(stdout, "| clients | new payments/s | p50 | p99 | coordinator writes / payment |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|")
	for _, clients := range t.clients {
		before, beforeErr := consoleCommitIndex(ctx, client, t.console)
		res, err := load(ctx, client, t.bases, t.apiKey, clients, t.duration, newKey)
		if err != nil {
			return fmt.Errorf("%d clients: %w", clients, err)
		}
		writes := "–"
		if after, err := consoleCommitIndex(ctx, client, t.console); err == nil && beforeErr == nil {
			writes = fmt.Sprintf("%.3f", float64(after-before)/float64(res.n))
		}
		fmt.Fprintf(stdout, "| %d | %.0f | %s | %s | %s |\n", clients, res.rate, ms(res.p50), ms(res.p99), writes)
	}
	return nil
}

// consoleCommitIndex returns the highest commit index among the
// coordinators in the console's view. The view is as fresh as the
// console's last read of the nodes (about a second), so the count is
// approximate at that edge.
func consoleCommitIndex(ctx context.Context, client *http.Client, console string) (uint64, error) {
	if console == "" {
		return 0, errors.New("no console")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(console, "/")+"/api/view", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("console view: status %d", resp.StatusCode)
	}
	var view struct {
		Coordinators []struct {
			CommitIndex uint64 `json:"commit_index"`
		} `json:"coordinators"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&view); err != nil {
		return 0, fmt.Errorf("console view: %w", err)
	}
	var best uint64
	for _, n := range view.Coordinators {
		best = max(best, n.CommitIndex)
	}
	if best == 0 {
		return 0, errors.New("the console saw no coordinator's commit index")
	}
	return best, nil
}

// splitList splits a comma-separated flag, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
