// Command payments measures the full POST /v1/payments path on real
// processes: a 3-node coordinator cluster, a durable PostgreSQL (fsync on),
// NATS JetStream (the outbox relay), the bank simulator with no added
// latency, and one payments instance, under each ownership design
// (ADR 0070): "partition" (the instance leases its ring partitions and
// renews them in one write per interval; no coordinator round trip per
// payment) and "lock" (a per-customer coordinator lock for every charge).
//
// For each design it prints new payments/s and p50/p99 at each client
// count, and the coordinator's Raft writes per payment over the run (the
// growth of the leader's commit index, divided by the payments made: lock
// and lease writes, membership heartbeats and expiry ticks all count), then
// a breakdown of where a new payment's time goes, from the spans the
// payments process exports in a separate traced run (tracing is off during
// the timed runs). Beside them it measures the pgbench floor: the commits
// one payment makes on its request path (floor.sql), run by pgbench on the
// same PostgreSQL at the same client counts, and prints each design's
// rate as a share of it.
//
// With -target it starts nothing and loads a stack that already runs
// (`make dev`, the compose stack), spreading the clients over the payments
// URLs given, as a load balancer in front of them would; the design is
// whatever that stack runs, and there is no floor or breakdown.
//
//	go run ./bench/payments
//	go run ./bench/payments -design partition -clients 1,16,64 -duration 5s
//	go run ./bench/payments -target http://127.0.0.1:8090,http://127.0.0.1:8091 -api-key payonce-demo-key-1 \
//	    -console http://127.0.0.1:8070
package main

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/jackc/pgx/v5"

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
	designFlag := fs.String("design", "both", "ownership design: partition, lock, or both (one run, both rows)")
	clientsFlag := fs.String("clients", "1,16", "comma-separated client counts")
	breakdown := fs.Bool("breakdown", true, "print each design's span breakdown from a short traced run")
	floor := fs.Bool("floor", true, "measure the pgbench floor: one payment's commits at each client count, in the same run")
	target := fs.String("target", "", "comma-separated payments URLs of a running stack to load instead of starting one (make dev: http://127.0.0.1:8090,http://127.0.0.1:8091)")
	targetKey := fs.String("api-key", "", "with -target: the caller's API key (make dev: payonce-demo-key-1)")
	targetConsole := fs.String("console", "", "with -target: the stack's console, whose view gives the coordinators' commit index, to count Raft writes per payment (optional)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	designs := []string{"partition", "lock"}
	switch *designFlag {
	case "both":
	case "partition", "lock":
		designs = []string{*designFlag}
	default:
		return fmt.Errorf("-design %q: want partition, lock or both", *designFlag)
	}
	var clientCounts []int
	for _, f := range strings.Split(*clientsFlag, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(f), &n); err != nil || n < 1 {
			return fmt.Errorf("-clients %q: want positive integers", *clientsFlag)
		}
		clientCounts = append(clientCounts, n)
	}
	if *target != "" {
		if *targetKey == "" {
			return errors.New("-target needs -api-key")
		}
		return runTarget(ctx, stdout, targetRun{
			bases:     splitList(*target),
			apiKey:    *targetKey,
			console:   *targetConsole,
			clients:   clientCounts,
			duration:  *duration,
			customers: *customers,
		})
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
			"PAYONCE_DEV_MODE=true", // plain HTTP, as the rest of this bench's throwaway stack
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
	paymentsEnv := func(port int, design string, traced bool) []string {
		env := []string{
			fmt.Sprintf("PAYMENTS_ADDR=127.0.0.1:%d", port),
			"INSTANCE_ID=payments-bench",
			"PAYMENTS_DATABASE_URL=" + pg.URL("payments"),
			"NATS_URL=" + nats.URL(),
			"COORDINATOR_URLS=" + strings.Join(coordURLs, ","),
			"BANK_URL=" + bankURL,
			"PAYMENTS_API_KEYS=bench:" + apiKey,
			"PAYMENTS_PEER_API_KEY=" + apiKey,
			"PAYMENTS_OWNERSHIP=" + design,
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
	stopPayments := func() {
		// SIGTERM: the process releases its leases and flushes its spans.
		_ = procs[len(procs)-1].Stop(10 * time.Second)
		procs = procs[:len(procs)-1]
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}, Timeout: 30 * time.Second}
	var seq atomic.Int64
	newKey := func() (string, string) {
		n := seq.Add(1)
		return fmt.Sprintf("bench-%d", n), fmt.Sprintf("cust-%d", rand.IntN(*customers))
	}

	type row struct {
		design  string
		clients int
		res     result
		writes  float64
	}
	var rows []row
	breakdowns := map[string][]otlpsink.Span{}
	for _, design := range designs {
		// The database runs one design at a time (migration 00030); every
		// payments instance is stopped here, so switching is allowed.
		if err := switchDesign(ctx, pg.URL("payments"), design); err != nil {
			return err
		}
		if err := start("payments-"+design, bins["payments"], paymentsEnv(port, design, false), base+"/readyz"); err != nil {
			return err
		}
		// Warm up (connections, the first leases' claims) outside the timing.
		if _, err := load(ctx, client, []string{base}, apiKey, 4, time.Second, newKey); err != nil {
			return fmt.Errorf("%s warm-up: %w", design, err)
		}
		for _, clients := range clientCounts {
			before, err := commitIndex(ctx, client, coordURLs)
			if err != nil {
				return err
			}
			fresh, err := load(ctx, client, []string{base}, apiKey, clients, *duration, newKey)
			if err != nil {
				return fmt.Errorf("%s, %d clients: %w", design, clients, err)
			}
			after, err := commitIndex(ctx, client, coordURLs)
			if err != nil {
				return err
			}
			rows = append(rows, row{design, clients, fresh, float64(after-before) / float64(fresh.n)})
		}
		stopPayments()
		if !*breakdown {
			continue
		}
		// Breakdown: the same design with tracing on, a short load of new
		// payments at 4 clients, spans averaged by name.
		seen := len(sink.Spans())
		if err := start("payments-"+design+"-traced", bins["payments"], paymentsEnv(port, design, true), base+"/readyz"); err != nil {
			return err
		}
		if _, err := load(ctx, client, []string{base}, apiKey, 4, 2*time.Second, newKey); err != nil {
			return err
		}
		stopPayments()
		breakdowns[design] = sink.Spans()[seen:]
	}

	// The floor: the same commits with nothing around them, on the same
	// PostgreSQL, at the same client counts, once the payments processes
	// have stopped.
	floors := map[int]result{}
	if *floor {
		script, err := prepareFloor(ctx, pg.URL("payments"), work)
		if err != nil {
			return fmt.Errorf("pgbench floor: %w", err)
		}
		for _, clients := range clientCounts {
			res, err := pgbenchFloor(ctx, pg.URL("payments"), script, work, clients, *duration)
			if err != nil {
				return fmt.Errorf("pgbench floor, %d clients: %w", clients, err)
			}
			floors[clients] = res
		}
	}

	fmt.Fprintf(stdout, "\nPOST /v1/payments, new payments (new Idempotency-Key each), %s per row, spread over %d customers, one payments instance\n", *duration, *customers)
	if *floor {
		fmt.Fprintf(stdout, "pgbench floor: the %d commits of one payment's request path, same statements, same PostgreSQL (bench/payments/floor.sql)\n", floorCommits)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "| design | clients | new payments/s | p50 | p99 | coordinator writes / payment | % of floor |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		share := "–"
		if f, ok := floors[r.clients]; ok {
			share = fmt.Sprintf("%.0f%%", 100*r.res.rate/f.rate)
		}
		fmt.Fprintf(stdout, "| %s | %d | %.0f | %s | %s | %.3f | %s |\n", r.design, r.clients, r.res.rate, ms(r.res.p50), ms(r.res.p99), r.writes, share)
	}
	for _, clients := range clientCounts {
		if f, ok := floors[clients]; ok {
			fmt.Fprintf(stdout, "| pgbench floor | %d | %.0f | %s | %s | – | 100%% |\n", clients, f.rate, ms(f.p50), ms(f.p99))
		}
	}
	for _, design := range designs {
		if spans, ok := breakdowns[design]; ok {
			fmt.Fprintf(stdout, "\n%s design:", design)
			printBreakdown(stdout, spans)
		}
	}
	return nil
}

// switchDesign sets the payments database's ownership design, as an
// operator switching a stopped fleet does.
func switchDesign(ctx context.Context, dbURL, design string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `UPDATE ownership_design SET design = $1`, design); err != nil {
		return fmt.Errorf("switch the ownership design to %s: %w", design, err)
	}
	return nil
}

// commitIndex returns the highest commit index the coordinator nodes
// report: the number of Raft entries written so far.
func commitIndex(ctx context.Context, client *http.Client, urls []string) (uint64, error) {
	var best uint64
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/cluster/node", nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			continue // a node down does not stop the count
		}
		var st struct {
			CommitIndex uint64 `json:"commit_index"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.CommitIndex > best {
			best = st.CommitIndex
		}
	}
	if best == 0 {
		return 0, errors.New("no coordinator node reported its commit index")
	}
	return best, nil
}

type result struct {
	n        int
	rate     float64
	p50, p99 time.Duration
}

// load runs clients concurrent callers for d, each sending new payments
// back to back with the API key bearer to one of bases (client i to bases[i%len(bases)]).
func load(ctx context.Context, client *http.Client, bases []string, bearer string, clients int, d time.Duration, next func() (idemKey, customer string)) (result, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	begin := time.Now()
	for c := range clients {
		base := bases[c%len(bases)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				idemKey, customer := next()
				t0 := time.Now()
				status, err := post(ctx, client, base, bearer, idemKey, customer)
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
		n:    len(lat),
		rate: float64(len(lat)) / time.Since(begin).Seconds(),
		p50:  lat[len(lat)/2],
		p99:  lat[len(lat)*99/100],
	}, nil
}

func post(ctx context.Context, client *http.Client, base, bearer, idemKey, customer string) (int, error) {
	body := fmt.Sprintf(`{"customer_id":%q,"amount":1250,"currency":"EUR","card":"4242424242424242"}`, customer)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/payments", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Idempotency-Key", idemKey)
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
	// Only the payments' own traces: the partition leases' takeover at
	// start-up (lock.acquire) and the renewals are not a payment's time.
	payment := map[string]bool{}
	for _, sp := range spans {
		if sp.Service == "payments" && sp.Name == "POST /v1/payments" {
			payment[sp.TraceID] = true
			requests++
		}
	}
	for _, sp := range spans {
		if sp.Service != "payments" || !payment[sp.TraceID] {
			continue
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
	fmt.Fprintf(w, "\nWhere a new payment's time goes (payments spans of the payments' traces, %d traced requests at 4 clients; spans nest, so rows overlap; the outbox relay's run after the response)\n\n", requests)
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
