// Command idempotency measures what pkg/idempotency costs. It runs, against
// one durable PostgreSQL server (fsync on, as in production):
//
//   - the middleware over real HTTP around a handler that inserts one row,
//     for new keys and for replays of completed keys, at 1, 4, 16 and 64
//     concurrent clients; new keys twice: the row in a Key.Phase (its
//     response stored by a commit of its own), and in a Key.FinalPhase
//     (the response stored in the row's transaction: one commit fewer);
//   - pgbench, in the same run and on the same server, running the floor
//     SQL of the same work: claim the key, insert the row, store the
//     response (three autocommitted statements, as the middleware commits
//     them) for a new key, and one primary-key lookup for a replay.
//
// The floor is what the database alone needs for the same durable work, so
// the ratio says what the middleware, HTTP and Go add. Both run in one
// process lifetime because the floor moves between runs (disk, neighbours).
//
//	go run ./bench/idempotency                 # throwaway durable cluster
//	go run ./bench/idempotency -duration 5s -database-url postgres://...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/pkg/idempotency"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/idempotency:", err)
		os.Exit(1)
	}
}

const replayKeys = 2000

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("idempotency", flag.ContinueOnError)
	duration := fs.Duration("duration", 3*time.Second, "measuring time per cell")
	dbURL := fs.String("database-url", getenv("BENCH_DATABASE_URL"), "PostgreSQL server to use (superuser); empty starts a durable throwaway cluster")
	clientList := fs.String("clients", "1,4,16,64", "concurrent clients, comma separated")
	prepared := fs.Bool("pgbench-prepared", false, "run pgbench with -M prepared -j 2 (a harder floor) instead of its defaults")
	pgbenchPath := fs.String("pgbench", "/usr/lib/postgresql/15/bin/pgbench", "pgbench binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var clients []int
	for _, s := range strings.Split(*clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return fmt.Errorf("bad -clients %q", *clientList)
		}
		clients = append(clients, n)
	}

	admin := *dbURL
	if admin == "" {
		c, err := localpg.Start(ctx, localpg.Options{Durable: true})
		if err != nil {
			return err
		}
		defer c.Stop()
		admin = c.URL("postgres")
	}
	const dbName = "idempotency_bench"
	_ = localpg.DropDatabase(ctx, admin, dbName)
	if err := localpg.CreateDatabase(ctx, admin, dbName); err != nil {
		return err
	}
	benchURL := strings.Replace(admin, "/postgres?", "/"+dbName+"?", 1)
	if benchURL == admin {
		return fmt.Errorf("cannot derive a database URL from %s: it must end in /postgres?...", admin)
	}
	cfg, err := pgxpool.ParseConfig(benchURL)
	if err != nil {
		return err
	}
	cfg.MaxConns = 80
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	store := idempotency.NewStore(pool, idempotency.Config{})
	if err := store.CreateSchema(ctx); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE items (
		id bigserial PRIMARY KEY, scope text NOT NULL, idem_key text NOT NULL, body jsonb NOT NULL)`); err != nil {
		return err
	}
	idem, err := idempotency.NewMiddleware(store, idempotency.Options{
		Scope:          func(*http.Request) (string, error) { return "bench", nil },
		TracerProvider: tracenoop.NewTracerProvider(),
		MeterProvider:  noop.NewMeterProvider(),
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/items", idem.Wrap(insertHandler(pool, false)))
	mux.Handle("POST /v1/items/final", idem.Wrap(insertHandler(pool, true)))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	transport := &http.Transport{MaxIdleConnsPerHost: 128, MaxConnsPerHost: 128}
	client := &http.Client{Transport: transport}
	for i := range replayKeys {
		status, err := post(ctx, client, srv.URL+"/v1/items", "replay-"+strconv.Itoa(i), i)
		if err != nil || status != http.StatusCreated {
			return fmt.Errorf("prepare replay key %d: status %d: %v", i, status, err)
		}
	}

	scripts, err := os.MkdirTemp("", "idempotency-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scripts)
	if err := writeScripts(scripts); err != nil {
		return err
	}

	floorMode := "pgbench defaults (simple protocol, 1 thread)"
	if *prepared {
		floorMode = "pgbench -M prepared -j 2"
	}
	fmt.Fprintf(stdout, "pkg/idempotency, %s per cell, durable PostgreSQL, floor: %s\n\n", *duration, floorMode)
	fmt.Fprintln(stdout, "| workload | clients | req/s | p50 | p99 | floor tps | floor p50 | floor p99 | ratio |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var seq atomic.Int64
	for _, w := range []struct {
		name, floorScript, path string
		next                    func() (string, int)
	}{
		{"new key (phase)", "new.sql", "/v1/items", func() (string, int) {
			n := int(seq.Add(1))
			return "new-" + strconv.Itoa(n), n
		}},
		{"new key (final phase)", "new_final.sql", "/v1/items/final", func() (string, int) {
			n := int(seq.Add(1))
			return "new-" + strconv.Itoa(n), n
		}},
		{"replay", "replay.sql", "/v1/items", func() (string, int) {
			n := rand.IntN(replayKeys)
			return "replay-" + strconv.Itoa(n), n
		}},
	} {
		for _, c := range clients {
			res, err := load(ctx, client, srv.URL+w.path, c, *duration, w.next)
			if err != nil {
				return fmt.Errorf("%s at %d clients: %w", w.name, c, err)
			}
			floor, err := pgbench(ctx, *pgbenchPath, benchURL, filepath.Join(scripts, w.floorScript), c, *duration, *prepared)
			if err != nil {
				return fmt.Errorf("pgbench %s at %d clients: %w", w.floorScript, c, err)
			}
			fmt.Fprintf(stdout, "| %s | %d | %.0f | %s | %s | %.0f | %s | %s | %.0f%% |\n",
				w.name, c, res.rate, ms(res.p50), ms(res.p99), floor.rate, ms(floor.p50), ms(floor.p99), 100*res.rate/floor.rate)
		}
	}
	return nil
}

// insertHandler is the work being made idempotent: one row, written in one
// atomic phase (so its insert and the key's recovery point commit together,
// as a real handler's would), answered with 201. final makes that phase the
// key's FinalPhase, whose transaction also stores the response.
func insertHandler(pool *pgxpool.Pool, final bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		key := idempotency.FromContext(ctx)
		body, _ := io.ReadAll(r.Body)
		var id int64
		if key.RecoveryPoint() == idempotency.InitialRecoveryPoint {
			phase := key.Phase
			if final {
				phase = key.FinalPhase
			}
			err := phase(ctx, func(tx pgx.Tx) (string, error) {
				return "inserted", tx.QueryRow(ctx, `INSERT INTO items (scope, idem_key, body) VALUES ($1, $2, $3) RETURNING id`,
					key.Scope(), key.Value(), body).Scan(&id)
			})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/v1/items/"+strconv.FormatInt(id, 10))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%d}`, id)
	})
}

func post(ctx context.Context, client *http.Client, url, key string, n int) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url,
		strings.NewReader(`{"amount": 1250, "currency": "EUR", "n": `+strconv.Itoa(n)+`}`))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(idempotency.Header, key)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

type result struct {
	rate     float64
	p50, p99 time.Duration
}

// load runs clients closed-loop clients against url for d and measures each
// request.
func load(ctx context.Context, client *http.Client, url string, clients int, d time.Duration, next func() (string, int)) (result, error) {
	var (
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
		wg        sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				key, n := next()
				t0 := time.Now()
				status, err := post(ctx, client, url, key, n)
				if err == nil && status != http.StatusCreated {
					err = fmt.Errorf("status %d for key %s", status, key)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpOr(firstErr, err)
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	return summarize(latencies, time.Since(start)), nil
}

func summarize(lat []time.Duration, elapsed time.Duration) result {
	if len(lat) == 0 {
		return result{}
	}
	slices.Sort(lat)
	return result{
		rate: float64(len(lat)) / elapsed.Seconds(),
		p50:  lat[len(lat)*50/100],
		p99:  lat[len(lat)*99/100],
	}
}

// writeScripts writes the floor SQL. new.sql is what the middleware's new
// key costs at the least: the claim (one INSERT), the handler's row, the
// stored response; replay.sql is the one primary-key read of a replay.
func writeScripts(dir string) error {
	newSQL := `\set k random(1, 9000000000000000000)
INSERT INTO idempotency_keys (scope, key, fingerprint, recovery_point, holder, locked_until, expires_at)
  VALUES ('pgbench', 'pgb-' || :k, '\x00000000000000000000000000000000000000000000000000000000000000ff', 'started',
          gen_random_uuid(), now() + interval '30 seconds', now() + interval '24 hours')
  ON CONFLICT DO NOTHING RETURNING recovery_point, expires_at;
INSERT INTO items (scope, idem_key, body) VALUES ('pgbench', 'pgb-' || :k, '{"amount": 1250, "currency": "EUR"}') RETURNING id;
UPDATE idempotency_keys SET recovery_point = 'finished', holder = NULL, locked_until = NULL, response_status = 201,
       response_headers = '{"Content-Type": ["application/json"]}', response_body = '{"id": 1}', completed_at = now()
 WHERE scope = 'pgbench' AND key = 'pgb-' || :k;
`
	// The final phase's floor: the claim, then the row and the response in
	// one transaction.
	newFinalSQL := `\set k random(1, 9000000000000000000)
INSERT INTO idempotency_keys (scope, key, fingerprint, recovery_point, holder, locked_until, expires_at)
  VALUES ('pgbench', 'pgf-' || :k, '\x00000000000000000000000000000000000000000000000000000000000000ff', 'started',
          gen_random_uuid(), now() + interval '30 seconds', now() + interval '24 hours')
  ON CONFLICT DO NOTHING RETURNING recovery_point, expires_at;
BEGIN;
INSERT INTO items (scope, idem_key, body) VALUES ('pgbench', 'pgf-' || :k, '{"amount": 1250, "currency": "EUR"}') RETURNING id;
UPDATE idempotency_keys SET recovery_point = 'finished', holder = NULL, locked_until = NULL, response_status = 201,
       response_headers = '{"Content-Type": ["application/json"]}', response_body = '{"id": 1}', completed_at = now()
 WHERE scope = 'pgbench' AND key = 'pgf-' || :k;
COMMIT;
`
	replaySQL := fmt.Sprintf(`\set r random(0, %d)
SELECT fingerprint, response_status, response_headers, response_body
  FROM idempotency_keys WHERE scope = 'bench' AND key = 'replay-' || :r;
`, replayKeys-1)
	if err := os.WriteFile(filepath.Join(dir, "new.sql"), []byte(newSQL), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "new_final.sql"), []byte(newFinalSQL), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "replay.sql"), []byte(replaySQL), 0o644)
}

// pgbench runs script at the given concurrency and reads per-transaction
// latencies from its log (-l), so the floor gets percentiles too.
func pgbench(ctx context.Context, bin, dbURL, script string, clients int, d time.Duration, prepared bool) (result, error) {
	logDir, err := os.MkdirTemp("", "pgbench-log-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(logDir)
	// pgbench's defaults (simple query protocol, one thread) are how the
	// floor was defined in issue 5; -M prepared -j 2 raises the lookup
	// floor by about a third on two cores, and the table notes both.
	args := []string{"-n", "-c", strconv.Itoa(clients)}
	if prepared {
		args = append(args, "-M", "prepared", "-j", "2")
	}
	cmd := exec.CommandContext(ctx, bin, append(args,
		"-T", strconv.Itoa(max(1, int(d.Seconds()))),
		"-f", script, "-l", "--log-prefix", filepath.Join(logDir, "tx"), dbURL)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("%w: %s", err, out)
	}
	var tps float64
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "tps = "); ok {
			tps, _ = strconv.ParseFloat(strings.Fields(rest)[0], 64)
		}
	}
	if tps == 0 {
		return result{}, errors.New("no tps in pgbench output: " + string(out))
	}
	var lat []time.Duration
	logs, _ := filepath.Glob(filepath.Join(logDir, "tx*"))
	for _, name := range logs {
		b, err := os.ReadFile(name)
		if err != nil {
			return result{}, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			// client_id transaction_no time_us script_no time_epoch time_us_frac
			if f := strings.Fields(line); len(f) >= 3 {
				us, _ := strconv.ParseInt(f[2], 10, 64)
				lat = append(lat, time.Duration(us)*time.Microsecond)
			}
		}
	}
	res := summarize(lat, d)
	res.rate = tps
	return res, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
