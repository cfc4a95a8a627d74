// Command console measures the console under load: against a running dev
// stack (make dev: 2 orders and 2 payments instances), it sends orders at a
// fixed rate for a bounded time, each paid through the whole stack, while it
// reads the console's event stream and, in headless Chromium, the page
// itself. It prints the page weight, the update rate and view size under
// load, how long the console takes to read the stack, how long /api/view
// takes to answer, how long the page takes to render one view, and whether
// the page stays responsive meanwhile: the round trip of a script evaluated
// in the page (what a click waits for), the gaps between animation frames,
// and the long tasks the browser reports.
//
//	make dev                      # in another terminal
//	go run ./bench/console -rate 100 -d 30s
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/console:", err)
		os.Exit(1)
	}
}

func run() error {
	consoleURL := flag.String("console", "http://127.0.0.1:8070", "the console")
	ordersURLs := flag.String("orders", "http://127.0.0.1:8080,http://127.0.0.1:8081", "orders instances")
	bankURL := flag.String("bank", "http://127.0.0.1:8099", "the bank")
	apiKey := flag.String("key", "payonce-demo-key-1", "the demo caller's API key")
	rate := flag.Int("rate", 100, "orders (hence payments) per second")
	d := flag.Duration("d", 30*time.Second, "how long to send")
	customers := flag.Int("customers", 8, "customers the orders spread over (the console watches them)")
	browser := flag.Bool("browser", true, "also render the page in headless Chromium")
	settleFor := flag.Duration("settle", 3*time.Minute, "how long to wait, after sending, for every created order's capture")
	inFlight := flag.Int("inflight", 1024, "most create requests in flight at once; a tick beyond it is not sent (and counted)")
	flag.Parse()

	// Page weight: what a first load fetches.
	weight := 0
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		b, err := get(*consoleURL + path)
		if err != nil {
			return err
		}
		weight += len(b)
	}
	// Only the captures applied from now on are this run's: the ledger
	// holds every earlier one too.
	since := time.Now()
	if _, err := captures(*bankURL, since); err != nil {
		return err
	}
	names := make([]string, *customers)
	for i := range names {
		names[i] = fmt.Sprintf("load-%d", i)
		// A lookup makes the console watch the customer.
		if _, err := get(*consoleURL + "/api/ring/lookup?customer=" + names[i]); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *d+2*time.Minute)
	defer cancel()
	var stream streamStats
	streamCtx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	go stream.read(streamCtx, *consoleURL+"/api/events")

	var page *pageStats
	var err error
	if *browser {
		page, err = openPage(ctx, *consoleURL)
		if err != nil {
			return err
		}
	}

	// The load: one order per tick, spread over the orders instances. The
	// ticks follow a fixed schedule from the start (the n-th is due at
	// start + n/rate), and overdue ones are sent at once: a time.Ticker
	// drops the ticks a busy loop misses, which on a loaded machine sent
	// 71/s when 100/s were asked.
	instances := strings.Split(*ordersURLs, ",")
	var load loadStats
	var wg sync.WaitGroup
	sem := make(chan struct{}, *inFlight)
	var viewLatency, evalLatency []time.Duration
	if page != nil {
		if err := page.startFrames(); err != nil {
			return err
		}
	}
	// The probes run beside the load, so a slow answer never holds a tick.
	probeCtx, stopProbes := context.WithCancel(ctx)
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		probe := time.NewTicker(500 * time.Millisecond)
		defer probe.Stop()
		for {
			select {
			case <-probeCtx.Done():
				return
			case <-probe.C:
			}
			t0 := time.Now()
			if _, err := get(*consoleURL + "/api/view"); err == nil {
				viewLatency = append(viewLatency, time.Since(t0))
			}
			if page != nil {
				// The page's main thread answers a script as it would a
				// click: its round trip is what a learner waits for.
				t0 = time.Now()
				if err := page.ping(); err == nil {
					evalLatency = append(evalLatency, time.Since(t0))
				}
			}
		}
	}()
	start := time.Now()
	stamp := start.UnixNano()
	interval := time.Second / time.Duration(*rate)
	total := int(*d / interval)
	pace := time.NewTimer(0)
	for n := 1; n <= total; n++ {
		if wait := time.Until(start.Add(time.Duration(n-1) * interval)); wait > 0 {
			pace.Reset(wait)
			<-pace.C
		}
		select {
		case sem <- struct{}{}:
		default:
			load.notSent.Add(1) // -inflight requests unanswered: count it, do not queue
			continue
		}
		load.sent.Add(1)
		wg.Go(func() {
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"customer_id":%q,"currency":"EUR","card":"4242424242424242","lines":[{"sku":"cup","quantity":1}]}`, names[n%len(names)])
			t0 := time.Now()
			outcome := createOrder(instances[n%len(instances)], *apiKey, fmt.Sprintf("load-%d-%d", stamp, n), body)
			load.record(outcome, time.Since(t0))
		})
	}
	sendTime := time.Since(start)
	stopProbes()
	<-probesDone
	// The page's figures cover the sending window only.
	var st renderStats
	var fr frameStats
	if page != nil {
		if st, err = page.stats(); err != nil {
			return err
		}
		if fr, err = page.frames(); err != nil {
			return err
		}
	}
	wg.Wait()
	// Let the last payments settle, bounded: every created order is paid
	// through the whole stack, so the bank should capture one charge each.
	created := int(load.created())
	got := 0
	var ledgerErr error
	settle := time.NewTicker(500 * time.Millisecond)
	settleStart := time.Now()
	for deadline := time.Now().Add(*settleFor); time.Now().Before(deadline); <-settle.C {
		n, err := captures(*bankURL, since)
		if ledgerErr = err; err != nil {
			continue
		}
		if got = n; got >= created {
			break
		}
	}
	stopStream()
	stream.mu.Lock()
	defer stream.mu.Unlock()

	fmt.Printf("console under load (%d orders instances, %s sending)\n\n", len(instances), sendTime.Round(time.Second))
	fmt.Printf("%-44s %s\n", "page weight (/, app.js, style.css)", kb(weight))
	fmt.Printf("%-44s %.1f/s asked, %.1f/s sent, %.1f/s created; not sent (%d in flight): %d\n", "orders", float64(*rate),
		float64(load.sent.Load())/sendTime.Seconds(), float64(created)/sendTime.Seconds(), *inFlight, load.notSent.Load())
	fmt.Printf("%-44s %s\n", "answers to POST /v1/orders", load.answers())
	fmt.Printf("%-44s p50 %s, p95 %s, max %s\n", "time to create an order", pctD(load.latencies, 50), pctD(load.latencies, 95), pctD(load.latencies, 100))
	settled := map[bool]string{true: "within " + time.Since(settleStart).Round(time.Second).String(), false: "NOT within " + settleFor.String()}[got >= created]
	if ledgerErr != nil {
		settled += " (the ledger's last answer: " + ledgerErr.Error() + ")"
	}
	fmt.Printf("%-44s %d of %d orders, %s after sending ended\n", "captures at the bank", got, created, settled)
	fmt.Printf("%-44s %d views, %.2f/s\n", "event stream", len(stream.sizes), float64(len(stream.sizes))/stream.span().Seconds())
	fmt.Printf("%-44s mean %s, max %s\n", "view size", kb(mean(stream.sizes)), kb(slices.Max(append(stream.sizes, 0))))
	fmt.Printf("%-44s p50 %d ms, max %d ms\n", "time to read the stack for one view", pct(stream.readMS, 50), pct(stream.readMS, 100))
	fmt.Printf("%-44s p50 %s, p95 %s, max %s\n", "GET /api/view while loaded", pctD(viewLatency, 50), pctD(viewLatency, 95), pctD(viewLatency, 100))
	if page != nil {
		fmt.Printf("%-44s %d renders, mean %.1f ms, max %.1f ms\n", "page render of one view (Chromium)", st.Renders, st.TotalMs/float64(max(st.Renders, 1)), st.MaxMs)
		fmt.Printf("%-44s %.2f/s rendered, %.2f/s received\n", "views in the page", float64(st.Renders)/max(fr.SpanMs/1000, 0.001),
			float64(max(st.Views, st.Renders))/max(fr.SpanMs/1000, 0.001))
		fmt.Printf("%-44s p50 %s, p95 %s, max %s\n", "script round trip in the page (a click)", pctD(evalLatency, 50), pctD(evalLatency, 95), pctD(evalLatency, 100))
		fmt.Printf("%-44s %.0f/s, p50 %.0f ms, p99 %.0f ms, max %.0f ms, %d over 100 ms\n", "animation frames (gap between frames)",
			float64(len(fr.Gaps))/max(fr.SpanMs/1000, 0.001), pctF(fr.Gaps, 50), pctF(fr.Gaps, 99), pctF(fr.Gaps, 100), countOver(fr.Gaps, 100))
		fmt.Printf("%-44s %d, %.0f ms in all, longest %.0f ms\n", "long tasks (over 50 ms, the browser's count)", fr.LongTasks, fr.LongTaskMs, fr.LongestTaskMs)
	}
	return nil
}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

var client = &http.Client{Timeout: 30 * time.Second}

// loadStats counts what the sender did and how each request was answered.
type loadStats struct {
	sent, notSent atomic.Int64
	mu            sync.Mutex
	outcomes      map[string]int // "201", "429", "503", or the client's error
	latencies     []time.Duration
}

func (l *loadStats) record(outcome string, took time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.outcomes == nil {
		l.outcomes = map[string]int{}
	}
	l.outcomes[outcome]++
	l.latencies = append(l.latencies, took)
}

func (l *loadStats) created() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(l.outcomes["201"])
}

// answers lists the outcomes, the most frequent first.
func (l *loadStats) answers() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := slices.Collect(maps.Keys(l.outcomes))
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(l.outcomes[b]-l.outcomes[a], strings.Compare(a, b)) })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, l.outcomes[k])
	}
	return strings.Join(parts, ", ")
}

// createOrder sends one create request and names its outcome: the status
// code, with the problem type when there is one ("503 partition-not-held"),
// or the client's error.
func createOrder(base, key, idem, body string) string {
	req, _ := http.NewRequest("POST", base+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Idempotency-Key", idem)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "no answer within " + client.Timeout.String()
		}
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		_, _ = io.Copy(io.Discard, resp.Body)
		return "201"
	}
	var problem struct {
		Type string `json:"type"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&problem)
	if t := path.Base(problem.Type); problem.Type != "" && t != "." && t != "/" {
		return fmt.Sprintf("%d %s", resp.StatusCode, t)
	}
	return strconv.Itoa(resp.StatusCode)
}

// captures counts the bank's captures applied at or after since. It asks
// for captures only and checks each entry's kind too, so a bank that
// ignored the filter would not have its authorizations counted.
func captures(bank string, since time.Time) (int, error) {
	b, err := get(bank + "/v1/ledger?kind=capture")
	if err != nil {
		return 0, err
	}
	var l struct {
		Entries []struct {
			Kind string    `json:"kind"`
			At   time.Time `json:"at"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return 0, fmt.Errorf("the bank's ledger: %w", err)
	}
	n := 0
	for _, e := range l.Entries {
		if e.Kind == "capture" && !e.At.Before(since) {
			n++
		}
	}
	return n, nil
}

// streamStats reads the console's event stream and keeps each view's size
// and the console's own read time.
type streamStats struct {
	mu          sync.Mutex
	sizes       []int
	readMS      []int
	first, last time.Time
}

func (s *streamStats) span() time.Duration { return max(s.last.Sub(s.first), time.Millisecond) }

func (s *streamStats) read(ctx context.Context, url string) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		var v struct {
			ReadMS int `json:"read_ms"`
		}
		_ = json.Unmarshal(data, &v)
		s.mu.Lock()
		now := time.Now()
		if s.first.IsZero() {
			s.first = now
		}
		s.last = now
		s.sizes = append(s.sizes, len(data))
		s.readMS = append(s.readMS, v.ReadMS)
		s.mu.Unlock()
	}
}

type pageStats struct{ ctx context.Context }

type renderStats struct {
	Renders int     `json:"renders"`
	Views   int     `json:"views"` // received; 0 from a page that renders every view it receives
	TotalMs float64 `json:"totalMs"`
	MaxMs   float64 `json:"maxMs"`
}

func openPage(ctx context.Context, url string) (*pageStats, error) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil, fmt.Errorf("no Chromium (apt-get install chromium), or run with -browser=false")
	}
	alloc, _ := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000))...)
	tab, _ := chromedp.NewContext(alloc)
	if err := chromedp.Do(tab, chromedp.Navigate(url)); err != nil {
		return nil, err
	}
	return &pageStats{ctx: tab}, nil
}

func (p *pageStats) stats() (renderStats, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[renderStats](`window.consoleStats`))
}

// ping evaluates a trivial script in the page: it runs on the page's main
// thread, behind whatever rendering is under way.
func (p *pageStats) ping() error {
	_, err := chromedp.Run(p.ctx, chromedp.Evaluate[int](`1`))
	return err
}

type frameStats struct {
	Gaps          []float64 `json:"gaps"`
	SpanMs        float64   `json:"spanMs"`
	LongTasks     int       `json:"longTasks"`
	LongTaskMs    float64   `json:"longTaskMs"`
	LongestTaskMs float64   `json:"longestTaskMs"`
}

// startFrames records, in the page, the gap between animation frames (a
// page that keeps up paints about 60 a second; a gap is a frame it could
// not paint) and the long tasks the browser reports.
func (p *pageStats) startFrames() error {
	_, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](`(() => {
		window.consoleStats = {renders: 0, totalMs: 0, maxMs: 0, views: 0}; // from now on
		const f = window.benchFrames = {gaps: [], start: performance.now(), last: 0, longTasks: 0, longTaskMs: 0, longestTaskMs: 0};
		const tick = (t) => { if (f.last) f.gaps.push(t - f.last); f.last = t; requestAnimationFrame(tick); };
		requestAnimationFrame(tick);
		try {
			new PerformanceObserver((list) => { for (const e of list.getEntries()) {
				f.longTasks++; f.longTaskMs += e.duration; f.longestTaskMs = Math.max(f.longestTaskMs, e.duration); } })
				.observe({type: "longtask"});
		} catch (e) { /* no long task timing in this browser */ }
		return true; })()`))
	return err
}

func (p *pageStats) frames() (frameStats, error) {
	return chromedp.Run(p.ctx, chromedp.Evaluate[frameStats](`(() => { const f = window.benchFrames;
		return {gaps: f.gaps, spanMs: f.last - f.start, longTasks: f.longTasks, longTaskMs: f.longTaskMs, longestTaskMs: f.longestTaskMs}; })()`))
}

func pctF(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[min(len(s)-1, len(s)*p/100)]
}

func countOver(xs []float64, limit float64) int {
	n := 0
	for _, x := range xs {
		if x > limit {
			n++
		}
	}
	return n
}

func kb(n int) string { return fmt.Sprintf("%.1f kB", float64(n)/1000) }

func mean(xs []int) int {
	if len(xs) == 0 {
		return 0
	}
	t := 0
	for _, x := range xs {
		t += x
	}
	return t / len(xs)
}

func pct(xs []int, p int) int {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[min(len(s)-1, len(s)*p/100)]
}

func pctD(xs []time.Duration, p int) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Millisecond)
}
