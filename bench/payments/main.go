// Command payments measures the full POST /v1/payments path on real
// processes: a 3-node coordinator cluster (the customer lock), a durable
// PostgreSQL (fsync on), NATS JetStream (the outbox relay), the bank
// simulator with no added latency, and one payments instance.
//
// It prints requests/s and p50/p99 at 1, 4, 16 and 64 concurrent clients,
// for new idempotency keys (each a new charge: lock, fence, bank, outbox)
// and for replays of completed keys, then a breakdown of where a new
// payment's time goes, from the spans the payments process exports in a
// separate traced run (tracing is off during the timed runs).
//
//	go run ./bench/payments
//	go run ./bench/payments -duration 5s -customers 1000
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce/internal/localnats"
	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/internal/otlpsink"
	"github.com/payonce/payonce/internal/proc"
	"github.com/payonce/payonce/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/payments:", err)
		os.Exit(1)
	}
}

const apiKey = "bench-key-0123456789abcdef"

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("payments", flag.ContinueOnError)
	duration := fs.Duration("duration", 5*time.Second, "length of each timed run")
	customers := fs.Int("customers", 1000, "distinct customers new payments are spread over (fewer means more lock contention)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	work, err := os.MkdirTemp("", "payonce-bench-payments-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Fprintln(stdout, "building binaries…")
	bins, err := proc.Build(ctx, root, filepath.Join(work, "bin"),
		"./services/coordinator/cmd/coordinator", "./services/bank/cmd/bank", "./services/payments/cmd/payments")
	if err != nil {
		return err
	}
	pg, err := localpg.Start(ctx, localpg.Options{Durable: true})
	if err != nil {
		return err
	}
	defer pg.Stop()
	if err := pg.CreateDatabase(ctx, "payments"); err != nil {
		return err
	}
	if _, err := migrations.Up(ctx, pg.URL("payments"), "payments"); err != nil {
		return err
	}
	nats, err := localnats.Start(localnats.Options{StoreDir: filepath.Join(work, "nats")})
	if err != nil {
		return err
	}
	defer nats.Shutdown()

	var procs []*proc.Process
	defer func() {
		for _, p := range procs {
			_ = p.Stop(10 * time.Second)
		}
	}()
	start := func(name, bin string, env []string, ready string) error {
		p, err := proc.Start(name, bin, append(env, "LOG_LEVEL=error"), nil)
		if err != nil {
			return err
		}
		procs = append(procs, p)
		readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		return proc.WaitReady(readyCtx, p, ready)
	}
	var peers, coordURLs []string
	var coordEnv [][]string
	for i := range 3 {
		raftPort, _ := proc.FreePort()
		httpPort, _ := proc.FreePort()
		url := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
		coordURLs = append(coordURLs, url)
		peers = append(peers, fmt.Sprintf("c%d=127.0.0.1:%d=%s", i+1, raftPort, url))
		coordEnv = append(coordEnv, []string{
			fmt.Sprintf("COORDINATOR_NODE_ID=c%d", i+1),
			fmt.Sprintf("COORDINATOR_BOOTSTRAP=%t", i == 0), // c1 bootstraps, its leader admits c2 and c3
			fmt.Sprintf("COORDINATOR_RAFT_BIND=127.0.0.1:%d", raftPort),
			fmt.Sprintf("COORDINATOR_HTTP_ADDR=127.0.0.1:%d", httpPort),
			"COORDINATOR_DATA_DIR=" + filepath.Join(work, fmt.Sprintf("c%d", i+1)),
		})
	}
	for i := range 3 {
		p, err := proc.Start(fmt.Sprintf("coordinator-%d", i+1), bins["coordinator"],
			append(coordEnv[i], "COORDINATOR_PEERS="+strings.Join(peers, ","), "LOG_LEVEL=error"), nil)
		if err != nil {
			return err
		}
		procs = append(procs, p)
	}
	for i, p := range procs {
		readyCtx, cancel := context.WithTimeout(ctx, time.Minute)
		err := proc.WaitReady(readyCtx, p, coordURLs[i]+"/readyz")
		cancel()
		if err != nil {
			return err
		}
	}
	bankPort, _ := proc.FreePort()
	bankURL := fmt.Sprintf("http://127.0.0.1:%d", bankPort)
	if err := start("bank", bins["bank"], []string{fmt.Sprintf("BANK_ADDR=127.0.0.1:%d", bankPort)}, bankURL+"/readyz"); err != nil {
		return err
	}
	sink := otlpsink.New()
	sinkSrv := httptest.NewServer(sink)
	defer sinkSrv.Close()
	paymentsEnv := func(port int, traced bool) []string {
		env := []string{
			fmt.Sprintf("PAYMENTS_ADDR=127.0.0.1:%d", port),
			"INSTANCE_ID=payments-bench",
			"PAYMENTS_DATABASE_URL=" + pg.URL("payments"),
			"NATS_URL=" + nats.URL(),
			"COORDINATOR_URLS=" + strings.Join(coordURLs, ","),
			"BANK_URL=" + bankURL,
			"PAYMENTS_API_KEYS=bench:" + apiKey,
			"PAYMENTS_PEER_API_KEY=" + apiKey,
			"PAYONCE_DEV_MODE=true", // a throwaway stack with a readable key
			// The benchmark measures the service, not the caller's quota.
			"PAYMENTS_RATE_LIMIT=0", "PAYMENTS_KEYS_PER_DAY=0",
		}
		if traced {
			env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+sinkSrv.URL, "OTEL_BSP_SCHEDULE_DELAY=100")
		}
		return env
	}
	port, _ := proc.FreePort()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := start("payments", bins["payments"], paymentsEnv(port, false), base+"/readyz"); err != nil {
		return err
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 30 * time.Second}
	var seq atomic.Int64
	var doneKeys sync.Map
	newKey := func() (string, string) {
		n := seq.Add(1)
		return fmt.Sprintf("bench-%d", n), fmt.Sprintf("cust-%d", rand.IntN(*customers))
	}

	fmt.Fprintf(stdout, "\nPOST /v1/payments, %s per run, new payments spread over %d customers\n\n", *duration, *customers)
	fmt.Fprintln(stdout, "| clients | new keys req/s | p50 | p99 | replays req/s | p50 | p99 |")
	fmt.Fprintln(stdout, "|---:|---:|---:|---:|---:|---:|---:|")
	for _, clients := range []int{1, 4, 16, 64} {
		fresh, err := load(ctx, client, base, clients, *duration, func() (string, string) {
			k, c := newKey()
			doneKeys.Store(k, c)
			return k, c
		})
		if err != nil {
			return err
		}
		var keys [][2]string
		doneKeys.Range(func(k, c any) bool { keys = append(keys, [2]string{k.(string), c.(string)}); return len(keys) < 5000 })
		replays, err := load(ctx, client, base, clients, *duration, func() (string, string) {
			kc := keys[rand.IntN(len(keys))]
			return kc[0], kc[1]
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "| %d | %.0f | %s | %s | %.0f | %s | %s |\n", clients,
			fresh.rate, ms(fresh.p50), ms(fresh.p99), replays.rate, ms(replays.p50), ms(replays.p99))
	}

	// Breakdown: restart payments with tracing on, run a short load of new
	// payments at 4 clients, and average the spans by name.
	_ = procs[len(procs)-1].Stop(10 * time.Second)
	procs = procs[:len(procs)-1]
	if err := start("payments-traced", bins["payments"], paymentsEnv(port, true), base+"/readyz"); err != nil {
		return err
	}
	if _, err := load(ctx, client, base, 4, 2*time.Second, newKey); err != nil {
		return err
	}
	// SIGTERM makes the process flush its spans before it exits.
	_ = procs[len(procs)-1].Stop(10 * time.Second)
	procs = procs[:len(procs)-1]
	printBreakdown(stdout, sink.Spans())
	return nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
}

func load(ctx context.Context, client *http.Client, base string, clients int, d time.Duration, next func() (key, customer string)) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	begin := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				key, customer := next()
				t0 := time.Now()
				status, err := post(ctx, client, base, key, customer)
				if err == nil && status != http.StatusCreated {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	if len(lat) == 0 {
		return result{}, errors.New("no request completed")
	}
	slices.Sort(lat)
	return result{
		rate: float64(len(lat)) / time.Since(begin).Seconds(),
		p50:  lat[len(lat)/2],
		p99:  lat[len(lat)*99/100],
	}, nil
}

func post(ctx context.Context, client *http.Client, base, key, customer string) (int, error) {
	body := fmt.Sprintf(`{"customer_id":%q,"amount":1250,"currency":"EUR","card":"4242424242424242"}`, customer)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/payments", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// printBreakdown averages the payments process's spans by name over the
// traced run: where one new payment spends its time.
func printBreakdown(w io.Writer, spans []otlpsink.Span) {
	type agg struct {
		n     int
		total time.Duration
	}
	by := map[string]*agg{}
	requests := 0
	for _, sp := range spans {
		if sp.Service != "payments" {
			continue
		}
		if sp.Name == "POST /v1/payments" {
			requests++
		}
		a := by[sp.Name]
		if a == nil {
			a = &agg{}
			by[sp.Name] = a
		}
		a.n++
		a.total += sp.End.Sub(sp.Start)
	}
	if requests == 0 {
		fmt.Fprintln(w, "\n(no spans received for the breakdown)")
		return
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return by[names[i]].total > by[names[j]].total })
	fmt.Fprintf(w, "\nWhere a new payment's time goes (payments spans, %d traced requests at 4 clients; spans nest, so rows overlap)\n\n", requests)
	fmt.Fprintln(w, "| span | per request | mean duration |")
	fmt.Fprintln(w, "|---|---:|---:|")
	for _, n := range names {
		a := by[n]
		fmt.Fprintf(w, "| %s | %.2f | %s |\n", n, float64(a.n)/float64(requests), ms(a.total/time.Duration(a.n)))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
