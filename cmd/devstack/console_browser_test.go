package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color/palette"
	"image/draw"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/payonce/payonce/services/payments"
)

// browserWait bounds every wait on the page. The stack runs under the race
// detector on two shared cores next to a headless Chromium: generous, but
// each wait ends as soon as its condition holds.
const browserWait = 3 * time.Minute

// TestConsoleInABrowser starts one dev stack (with its console, in dev
// mode) and drives the console page in a real headless Chromium: the page
// loads and streams with no console error; the rings show every instance; a
// retry storm started from the page ends with one order and one capture at
// the bank; killing the Raft leader from the page shows a new leader, and
// restarting it brings the third node back; stopping a payments instance
// moves its slots, and starting it moves them back; pausing it past its
// lease takes it off the ring until it wakes; with the payments and then the
// orders database stopped from the page, an order waits, is charged, and is
// paid once both are back, with one capture. A screenshot of each
// state is written to PAYONCE_CONSOLE_SCREENSHOTS (docs/img for the docs)
// or a temporary directory.
func TestConsoleInABrowser(t *testing.T) {
	chromium := findChromium(t)
	// Every process of the stack inherits these. The failpoint makes each
	// payments process ignore the loss of its lease during its first
	// charge after it starts (the pause step below relies on it, with
	// payments-2 restarted just before); the bank call may then outlast
	// the pause, so its timeout does too.
	t.Setenv("PAYONCE_FAILPOINTS", payments.FailIgnoreLeaseLoss)
	t.Setenv("BANK_TIMEOUT", "2m")
	t.Setenv("CONSOLE_PAUSE_FOR", "30s")
	s := startStack(t)
	consoleURL := s.urls["console"]
	if consoleURL == "" || s.urls["devstack control"] == "" {
		t.Fatalf("devstack printed no console or control URL: %v", s.urls)
	}
	shots := os.Getenv("PAYONCE_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-gpu", true))...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// Bounds the whole walk through the page (each wait has its own bound):
	// under the race detector on two shared cores it took 15 minutes with
	// the database outages, whose redeliveries back off up to 30 s.
	ctx, cancelAll := context.WithTimeout(ctx, 25*time.Minute)
	defer cancelAll()

	// Every console message, error or not, is kept; errors fail the test.
	var mu sync.Mutex
	var messages []chromedp.ConsoleMessage
	console := chromedp.Console(ctx)
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for m, err := range console {
			if err != nil {
				return
			}
			mu.Lock()
			messages = append(messages, m)
			mu.Unlock()
		}
	}()
	errorsSoFar := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, m := range messages {
			if m.Type == chromedp.ConsoleError || m.IsException() {
				out = append(out, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			}
		}
		return out
	}

	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v\nconsole errors: %v", what, err, errorsSoFar())
		}
	}
	waitFor := func(what, expression string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expression,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(browserWait))); err != nil {
			text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("%s: %v\nconsole errors: %v\npage:\n%s", what, err, errorsSoFar(), text)
		}
	}
	// click clicks the element selector names from inside the page, in one
	// evaluation, retried until the element is there. The page re-renders
	// its tables on every update, so a node found by one protocol call can be
	// gone by the next ("Could not find node with given id" from a
	// chromedp.Click that hit a re-render); finding and clicking in one
	// script cannot be split by a render.
	click := func(what, selector string) {
		t.Helper()
		waitFor(what, fmt.Sprintf(`(() => { const el = document.querySelector(%q); if (el === null) return false; el.click(); return true; })()`, selector))
	}
	eval := func(expression string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expression))
		if err != nil {
			t.Fatalf("%s: %v", expression, err)
		}
		return v
	}
	screenshot := func(name string) {
		t.Helper()
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		small, err := shrinkPNG(img)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name), small, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %d bytes", name, len(small))
	}

	// The page loads and streams views, and the rings show every instance.
	do("open the console", chromedp.Navigate(consoleURL))
	waitFor("the page is live with a leader",
		`document.querySelector('#conn').textContent === 'live' && document.querySelectorAll('#raft tr.leader').length === 1`)
	waitFor("the rings show every instance", `['orders-1','orders-2'].every(n => document.querySelector('#ring-orders [data-member="'+n+'"]'))
		&& ['payments-1','payments-2'].every(n => document.querySelector('#ring-payments [data-member="'+n+'"]'))
		&& document.querySelectorAll('#ring-orders [data-member], #ring-payments [data-member]').length === 4`)
	waitFor("three coordinators answer", `document.querySelectorAll('#raft tr[data-node]').length === 3`)
	do("look up a customer", chromedp.SetValue(chromedp.CSS("#lookup-customer"), "alice"),
		chromedp.Click(chromedp.CSS("#lookup button")))
	waitFor("alice has an owner on both rings", `document.querySelectorAll('#placements [data-placement]').length === 2`)
	screenshot("console-overview.png")

	// A storm from the page: 20 identical requests, one key, one order, one
	// capture at the bank.
	do("start a storm", chromedp.SetValue(chromedp.CSS("#storm-n"), "20"),
		chromedp.SetValue(chromedp.CSS("#storm-customer"), "storm-browser"), chromedp.Click(chromedp.CSS("#storm-start")))
	waitFor("the storm ends", `document.querySelector('#storms tr[data-done="true"]') !== null`)
	row := eval(`document.querySelector('#storms tr[data-done="true"]').innerText`)
	charges := eval(`document.querySelector('#storms tr[data-done="true"] .charges').innerText.trim()`)
	if charges != "1" {
		t.Fatalf("the storm's row says %q charges, want 1: %s", charges, row)
	}
	storm := consoleStorm(t, consoleURL)
	if storm.Orders != 1 || storm.Charges != 1 || storm.OrderStatus != "paid" ||
		storm.Answers.First != 1 || storm.Answers.First+storm.Answers.Replayed != 20 {
		t.Fatalf("storm result %+v: want 20 answers for 1 order (1 first, 19 replays) and 1 charge", storm)
	}
	// The console's count is checked against the bank itself.
	if n := bankCaptures(t, s.urls["bank"], storm.PaymentID); n != 1 {
		t.Fatalf("the bank's ledger holds %d captures of payment %s, want 1", n, storm.PaymentID)
	}
	waitFor("the storm's order shows as paid", `[...document.querySelectorAll('#orders tbody tr')].some(r => r.innerText.includes('storm-browser') && r.innerText.includes('paid'))`)
	screenshot("console-storm.png")

	// The storm's trace, drawn inline from the dev stack's sink (no Jaeger
	// UI here): the order's row offers it once its spans have arrived.
	waitForTrace(t, s.urls["devstack control"], storm.TraceID)
	click("draw the storm's trace", fmt.Sprintf(`#orders [data-trace="%s"]`, storm.TraceID))
	waitFor("the waterfall is drawn", `(() => { const img = document.querySelector('#waterfall img');
		return img !== null && img.complete && img.naturalWidth > 0; })()`)
	screenshot("console-trace.png")

	// Kill the leader from the page: a new leader shows, then restart it.
	old := eval(`document.querySelector('#leader').textContent`)
	click("kill the leader", "#kill-leader")
	waitFor("a new leader", fmt.Sprintf(`(() => { const l = document.querySelector('#leader').textContent;
		return l !== %q && l !== 'none' && l !== '?' && document.querySelectorAll('#raft tr.down').length === 1
			&& document.querySelectorAll('#raft tr.leader').length === 1; })()`, old))
	t.Logf("leader %s killed; new leader %s", old, eval(`document.querySelector('#leader').textContent`))
	screenshot("console-leader-killed.png")
	click("restart the old leader", fmt.Sprintf(`[data-start="coordinator-%s"]`, old))
	waitFor("three coordinators again", `document.querySelectorAll('#raft tr[data-node]').length === 3 && !document.querySelector('#raft tr.down')`)

	// Stop a payments instance: it leaves the ring and its slots move.
	click("stop payments-2", `#ring-payments [data-stop="payments-2"]`)
	waitFor("payments-2 left the ring", `document.querySelectorAll('#ring-payments [data-member]').length === 1
		&& document.querySelectorAll('#ring-payments path.moved').length > 0`)
	screenshot("console-ring-moved.png")
	click("start payments-2", `[data-start="payments-2"]`)
	waitFor("payments-2 is back on the ring", `document.querySelectorAll('#ring-payments [data-member]').length === 2`)

	// Pause payments-2 in the middle of a charge, past its lease: frozen
	// (SIGSTOP) for CONSOLE_PAUSE_FOR, longer than any of its leases, it
	// renews neither its membership nor its partition leases. The page
	// shows it paused and off the ring, its slots moved, and payments-1
	// taking the partition over with a higher token. When the stack resumes
	// it (SIGCONT), the failpoint payments.ignore_lease_loss (armed for this
	// stack, above) has it go on with the charge as a process whose timers
	// have not fired yet would: its write carries its old token, PostgreSQL
	// refuses it, and the page shows that refusal and why. It registers
	// again and is back on the ring; the charge is finished once, by the
	// partition's owner.
	fencedCustomer, partition := customerPaidBy(t, consoleURL, "payments-2")
	if eval(`String(document.querySelector('[data-fence-refusal="payments-2"]') !== null)`) != "false" {
		t.Fatalf("the page shows a fence refusal by payments-2 before it was paused: %s", eval(`document.querySelector('#fence-refusals').innerText`))
	}
	// The bank's answer takes 10 s: long enough for the page to see the
	// charge inside the bank call and pause its instance there.
	do("slow the bank down", chromedp.SetValue(chromedp.CSS("#latency-ms"), "10000"))
	click("set the bank's latency", "#set-latency")
	waitFor("the bank answers after 10 s", `document.querySelector('#faults').textContent.includes('latency 10000 ms')`)
	do("order for a customer of payments-2", chromedp.SetValue(chromedp.CSS("#storm-n"), "1"),
		chromedp.SetValue(chromedp.CSS("#storm-customer"), fencedCustomer), chromedp.Click(chromedp.CSS("#storm-start")))
	waitFor("payments-2 is inside the bank call", fmt.Sprintf(
		`document.querySelector('#payments tr[data-customer=%q][data-status="authorizing"]') !== null`, fencedCustomer))
	click("pause payments-2", `#ring-payments [data-pause="payments-2"]`)
	waitFor("payments-2 is paused, and off the ring", `document.querySelector('#ring-payments [data-paused="payments-2"]:not([data-member])') !== null
		&& document.querySelectorAll('#ring-payments [data-member]').length === 1
		&& document.querySelectorAll('#ring-payments path.moved').length > 0`)
	waitFor("payments-1 holds payments-2's partition while it sleeps", fmt.Sprintf(`document.querySelector('#leases [data-partition="%d"]')?.dataset.holder === 'payments/payments-1'
		&& document.querySelectorAll('#leases [data-partition]').length === 64
		&& document.querySelector('#ring-payments [data-paused="payments-2"]') !== null`, partition))
	screenshot("console-paused.png")
	waitFor("payments-2 woke up and is back on the ring", `document.querySelector('#ring-payments [data-paused]') === null
		&& document.querySelectorAll('#ring-payments [data-member]').length === 2`)
	waitFor("the page shows payments-2's write refused by the fence, and why", `(() => {
		const f = document.querySelector('[data-fence-refusal="payments-2"]');
		return f !== null && Number(f.dataset.token) > 0 && Number(f.dataset.fenceToken) > Number(f.dataset.token)
			&& f.innerText.includes('its lease had ended') && f.innerText.includes('PostgreSQL refused it'); })()`)
	t.Logf("fence refusal shown: %s", eval(`document.querySelector('[data-fence-refusal="payments-2"]').innerText`))
	screenshot("console-fence-refused.png")
	click("clear the bank's faults", "#clear-faults")
	waitFor("the refused charge is finished by the partition's owner", fmt.Sprintf(
		`document.querySelector('#payments tr[data-customer=%q][data-status="succeeded"]') !== null`, fencedCustomer))
	fencedPayment := eval(fmt.Sprintf(`document.querySelector('#payments tr[data-customer=%q]').dataset.id`, fencedCustomer))
	if n := bankCaptures(t, s.urls["bank"], fencedPayment); n != 1 {
		t.Fatalf("the bank's ledger holds %d captures of payment %s (its first writer fenced out), want 1", n, fencedPayment)
	}

	// A long outage of each database, from the page. With payments'
	// database away an order is accepted and waits; with orders' database
	// away too, payments' return charges it, and orders cannot record the
	// outcome; when orders' database is back, the order is paid, with one
	// capture at the bank.
	const customer = "outage-browser"
	click("stop the payments database", `[data-db-stop="payments"]`)
	waitFor("the payments database refuses connections", `document.querySelector('[data-database="payments"][data-stopped="true"]') !== null`)
	do("order while payments' database is away", chromedp.SetValue(chromedp.CSS("#storm-n"), "3"),
		chromedp.SetValue(chromedp.CSS("#storm-customer"), customer), chromedp.Click(chromedp.CSS("#storm-start")))
	waitFor("the order is accepted and waits for its payment", fmt.Sprintf(`(() => {
		const o = document.querySelector('#orders tr[data-customer=%q]');
		return o !== null && o.dataset.status === 'pending_payment'; })()`, customer))
	click("stop the orders database", `[data-db-stop="orders"]`)
	waitFor("the orders database refuses connections, and the order shows as last read", fmt.Sprintf(`
		document.querySelector('[data-database="orders"][data-stopped="true"]') !== null
		&& document.querySelector('#orders tr[data-customer=%q][data-stale="true"]') !== null`, customer))
	click("start the payments database", `[data-db-start="payments"]`)
	waitFor("the payment succeeds while orders cannot record it", fmt.Sprintf(`
		document.querySelector('[data-database="payments"][data-stopped="false"]') !== null
		&& document.querySelector('#payments tr[data-customer=%q][data-status="succeeded"]') !== null
		&& document.querySelector('#orders tr[data-customer=%q][data-stale="true"][data-status="pending_payment"]') !== null`, customer, customer))
	screenshot("console-database-stopped.png")
	click("start the orders database", `[data-db-start="orders"]`)
	waitFor("the order is paid once orders' database is back", fmt.Sprintf(`
		document.querySelector('#orders tr[data-customer=%q][data-status="paid"]:not([data-stale])') !== null`, customer))
	payment := eval(fmt.Sprintf(`document.querySelector('#payments tr[data-customer=%q]').dataset.id`, customer))
	if n := bankCaptures(t, s.urls["bank"], payment); n != 1 {
		t.Fatalf("the bank's ledger holds %d captures of payment %s (ordered during the outages), want 1", n, payment)
	}

	if errs := errorsSoFar(); len(errs) > 0 {
		t.Fatalf("the page logged errors: %v", errs)
	}
	cancelAll()
	<-consoleDone
}

// findChromium locates the browser; .ci/run installs Debian's chromium.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found: the console's browser tests need it (apt-get install chromium; .ci/run installs it)")
	return ""
}

type stormView struct {
	TraceID     string `json:"trace_id"`
	Orders      int    `json:"orders"`
	Charges     int    `json:"charges"`
	OrderStatus string `json:"order_status"`
	PaymentID   string `json:"payment_id"`
	Answers     struct {
		First    int `json:"first"`
		Replayed int `json:"replayed"`
	} `json:"answers"`
}

// consoleStorm reads the latest storm from the console's own JSON view.
func consoleStorm(t *testing.T, consoleURL string) stormView {
	t.Helper()
	resp, err := http.Get(consoleURL + "/api/view")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Storms []stormView `json:"storms"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Storms) == 0 {
		t.Fatalf("console view: %v (%d storms)", err, len(v.Storms))
	}
	return v.Storms[0]
}

// consoleCaller is the caller the console acts as (its default key,
// payonce-demo-key-1, is the demo caller's).
const consoleCaller = "demo"

// customerPaidBy finds a customer of the console's caller whose partition
// the payments instance named holds now, as the console's view shows the
// partition leases, and returns it with its partition's number. It waits for
// one, bounded: after a restart the instance takes its partitions back
// over a few seconds.
func customerPaidBy(t *testing.T, consoleURL, instance string) (customer string, partition int) {
	t.Helper()
	owner := "payments/" + instance
	deadline := time.Now().Add(browserWait)
	poll := time.NewTicker(500 * time.Millisecond)
	defer poll.Stop()
	for {
		var v struct {
			Partitions []struct {
				Partition int    `json:"p"`
				Holder    string `json:"holder"`
			} `json:"partitions"`
		}
		resp, err := http.Get(consoleURL + "/api/view")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
		}
		held := map[int]bool{}
		for _, l := range v.Partitions {
			if l.Holder == owner {
				held[l.Partition] = true
			}
		}
		for i := range 1000 {
			c := "fenced-" + strconv.Itoa(i)
			if p := payments.PartitionOf(payments.CustomerLock(consoleCaller, c)); held[p] {
				return c, p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the console shows no partition held by %s (%v): %+v", owner, err, v.Partitions)
		}
		<-poll.C
	}
}

func bankCaptures(t *testing.T, bankURL, paymentID string) int {
	t.Helper()
	resp, err := http.Get(bankURL + "/v1/ledger?kind=capture&reference=" + paymentID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var l struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return len(l.Entries)
}

// shrinkPNG re-encodes a screenshot with a 216-colour palette: the page is
// flat colours and text, so it stays legible at a fraction of the size.
func shrinkPNG(data []byte) ([]byte, error) {
	src, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	dst := image.NewPaletted(src.Bounds(), palette.WebSafe)
	draw.Draw(dst, dst.Bounds(), src, src.Bounds().Min, draw.Src)
	var out bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&out, dst); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// waitForTrace waits until the dev stack's sink holds spans of the trace, so
// the page's request for its picture is answered (a 404 would be a console
// error).
func waitForTrace(t *testing.T, controlURL, traceID string) {
	t.Helper()
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	deadline := time.Now().Add(browserWait)
	for {
		resp, err := http.Get(controlURL + "/traces/" + traceID)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s never reached the sink (%v)", traceID, err)
		}
		<-poll.C
	}
}
