package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/services/payments"
)

// The partition design's guarantees on real processes (ADR 0070): payments
// instances under PAYMENTS_OWNERSHIP=partition (the default), real
// coordinators, PostgreSQL and NATS; only the bank is simulated.

// partitionEnv makes leases short, so the tests see them lapse and move.
var partitionEnv = []string{"PAYMENTS_PARTITION_TTL=1s", "PAYMENTS_PARTITION_DRAIN=500ms"}

// paymentStatus reads a payment's status and the row as text.
func paymentRow(t *testing.T, dbURL, id string) (status, row string) {
	t.Helper()
	conn := dbConn(t, dbURL)
	defer conn.Close(context.Background())
	err := conn.QueryRow(context.Background(), `SELECT status, row_to_json(p)::text FROM payments p WHERE id = $1`, id).Scan(&status, &row)
	if err != nil {
		return "", ""
	}
	return status, row
}

// partitionFence reads a partition's fence row: the token of the lease
// that last claimed it.
func partitionFence(t *testing.T, dbURL, partition string) uint64 {
	t.Helper()
	return uint64(dbCount(t, dbURL, `SELECT coalesce((SELECT token FROM fence_tokens WHERE resource = $1), 0)`, partition))
}

// metricValue reads a counter from an instance's /metrics (0 if absent).
func metricValue(t *testing.T, baseURL, name string) float64 {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var total float64
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				total += v
			}
		}
	}
	return total
}

// TestStalledPartitionOwnerIsFencedOut: payments-1 owns every partition
// and is inside a charge's bank call when it is frozen (SIGSTOP) for longer
// than its partition leases. payments-2 joins, takes the partitions over
// with strictly higher tokens, and its recovery finishes the charge. When
// payments-1 is thawed (SIGCONT), it goes on as if nothing happened (the
// failpoint payments.ignore_lease_loss keeps it from noticing its lease
// ended, as a process whose timers have not fired yet), and its write is
// refused by PostgreSQL: the new owner's result stands, one capture.
func TestStalledPartitionOwnerIsFencedOut(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	svc := newPaymentsService(t, coord, bank, testenv.NATS(t), append(partitionEnv, "BANK_TIMEOUT=60s")...)
	svc.start("PAYONCE_FAILPOINTS=" + payments.FailIgnoreLeaseLoss)
	bank.setFaults(t, map[string]any{"latency_ms": 1500})

	id := payments.PaymentIDFor("shop", "stalled-1")
	partition := payments.CustomerPartitionName("shop", "cust-stalled")
	answered := make(chan apiResponse, 1)
	first := svc.urls[0] // read here: a later svc.start() appends to svc.urls
	go func() {
		answered <- call("POST", first+"/v1/payments", testAPIKey, "stalled-1", newPayment("cust-stalled", 4200))
	}()
	eventually(t, 10*time.Second, "payments-1 inside the bank call", func() bool {
		status, _ := paymentRow(t, svc.dbURL, id)
		return status == "authorizing"
	})
	oldToken := partitionFence(t, svc.dbURL, partition)
	if err := syscall.Kill(svc.procs[0].Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = syscall.Kill(svc.procs[0].Pid(), syscall.SIGCONT)
		}
	}()

	svc.start() // payments-2
	eventually(t, 45*time.Second, "payments-2 finishes the charge under a newer lease", func() bool {
		status, _ := paymentRow(t, svc.dbURL, id)
		return status == "succeeded" && partitionFence(t, svc.dbURL, partition) > oldToken
	})
	_, before := paymentRow(t, svc.dbURL, id)
	newToken := partitionFence(t, svc.dbURL, partition)

	thawed = true
	if err := syscall.Kill(svc.procs[0].Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "lease-lost") {
		t.Fatalf("the thawed owner's answer: %d %s, want 503 lease-lost (its write refused by the fence)", r.Status, r.Body)
	}
	if got := metricValue(t, svc.urls[0], "payonce_payments_fenced_writes_total"); got < 1 {
		t.Fatalf("payments-1 counted %v fenced writes, want at least 1", got)
	}
	if _, after := paymentRow(t, svc.dbURL, id); after != before {
		t.Fatalf("the refused write changed the payment:\nbefore %s\nafter  %s", before, after)
	}
	if got := len(bank.ledger(t, "capture", id)); got != 1 {
		t.Fatalf("%d captures, want 1", got)
	}
	t.Logf("partition %s: payments-1 wrote under token %d, payments-2 claimed %d; payments-1's write refused", partition, oldToken, newToken)
}

// TestPartitionsMoveOnJoinUnderLoad: 8 clients pay continuously through
// payments-1 while payments-2 joins and takes half the partitions. Every
// request is retried with its key until it gets its payment; afterwards
// every key has exactly one payment row and one capture at the bank, and
// every partition that moved was claimed by payments-2 with a strictly
// higher token than payments-1's.
func TestPartitionsMoveOnJoinUnderLoad(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	svc := newPaymentsService(t, coord, bank, testenv.NATS(t), partitionEnv...)
	svc.start()
	before := map[string]uint64{}
	for p := range payments.Partitions {
		name := payments.PartitionName(p)
		before[name] = partitionFence(t, svc.dbURL, name)
		if before[name] == 0 {
			t.Fatalf("%s not claimed by payments-1", name)
		}
	}

	var seq atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	keys := map[string]bool{}
	var retries atomic.Int64
	// Read before the goroutines start: svc.start() below appends to svc.urls.
	first := svc.urls[0]
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("join-%d", seq.Add(1))
				customer := fmt.Sprintf("cust-%d-%d", c, seq.Load()%50)
				for attempt := 0; ; attempt++ {
					r := call("POST", first+"/v1/payments", testAPIKey, key, newPayment(customer, 100))
					if r.Status == http.StatusCreated {
						break
					}
					if attempt > 200 {
						t.Errorf("%s: still %d %s after %d attempts", key, r.Status, r.Body, attempt)
						return
					}
					retries.Add(1)
					time.Sleep(50 * time.Millisecond) // a client's back-off, not synchronisation
				}
				mu.Lock()
				keys[key] = true
				mu.Unlock()
			}
		}()
	}
	eventually(t, 20*time.Second, "load running", func() bool { return seq.Load() > 40 })
	svc.start() // payments-2 joins
	moved := func() int {
		n := 0
		for name, tok := range before {
			if partitionFence(t, svc.dbURL, name) > tok {
				n++
			}
		}
		return n
	}
	eventually(t, 30*time.Second, "partitions claimed by payments-2", func() bool { return moved() >= payments.Partitions/4 })
	paid := seq.Load()
	eventually(t, 30*time.Second, "load going on after the handoff", func() bool { return seq.Load() > paid+40 })
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}

	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != len(keys) {
		t.Fatalf("%d payment rows for %d keys", got, len(keys))
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments WHERE status <> 'succeeded'`); got != 0 {
		t.Fatalf("%d payments not succeeded", got)
	}
	captures := bank.ledger(t, "capture", "")
	perRef := map[string]int{}
	for _, c := range captures {
		perRef[c.Reference]++
	}
	for ref, n := range perRef {
		if n != 1 {
			t.Fatalf("payment %s captured %d times", ref, n)
		}
	}
	if len(perRef) != len(keys) {
		t.Fatalf("%d payments captured at the bank for %d keys", len(perRef), len(keys))
	}
	// The moved partitions' leases: held by payments-2 at the coordinator
	// with the token its claim wrote, above payments-1's.
	n := 0
	for name, tok := range before {
		now := partitionFence(t, svc.dbURL, name)
		if now == tok {
			continue
		}
		if now < tok {
			t.Fatalf("%s: fence token went down from %d to %d", name, tok, now)
		}
		var lock struct {
			Holder struct {
				Owner string `json:"owner"`
				Token uint64 `json:"token"`
			} `json:"holder"`
		}
		req, _ := newRequest("GET", coord.urls[0]+"/v1/locks/"+name, nil)
		r := do(req)
		if r.Err != nil || r.Status != http.StatusOK {
			t.Fatalf("lock %s: %d %v %s", name, r.Status, r.Err, r.Body)
		}
		_ = json.Unmarshal(r.Body, &lock)
		if lock.Holder.Owner == "payments/payments-2" && lock.Holder.Token <= tok {
			t.Fatalf("%s: payments-2's lease token %d is not above payments-1's %d", name, lock.Holder.Token, tok)
		}
		n++
	}
	t.Logf("%d payments, %d retried answers during the handoff, %d of %d partitions moved with higher tokens", len(keys), retries.Load(), n, payments.Partitions)
}

// TestCutOffInstanceStopsChargingWithinItsLease: payments-1 reaches the
// coordinators only through a proxy the test controls. Cut off, it stops
// charging before its lease TTL has passed (every payment asked after the
// cut plus the TTL is refused, none is captured), and once the proxy lets
// it through again it takes its partitions back and charges.
func TestCutOffInstanceStopsChargingWithinItsLease(t *testing.T) {
	coord := startCoordinators(t)
	bank := startBank(t)
	// The instance reaches the coordinators only through a TCP proxy
	// (TLS passes through it untouched) to the leader: the leader answers
	// itself, so no answer names another address the client could go to
	// around the proxy.
	req, _ := newRequest("GET", coord.urls[0]+"/v1/cluster", nil)
	r := do(req)
	var cluster struct {
		LeaderID string `json:"leader_id"`
	}
	if r.Err != nil || json.Unmarshal(r.Body, &cluster) != nil || cluster.LeaderID == "" {
		t.Fatalf("cluster: %d %v %s", r.Status, r.Err, r.Body)
	}
	var leader int
	fmt.Sscanf(cluster.LeaderID, "c%d", &leader)
	target, _ := url.Parse(coord.urls[leader-1])
	proxy := newCutProxy(t, target.Host)
	svc := newPaymentsService(t, coord, bank, testenv.NATS(t), partitionEnv...)
	svc.env = append(svc.env, "COORDINATOR_URLS="+target.Scheme+"://"+proxy.addr)
	svc.start()
	pay := func(key string) apiResponse {
		return call("POST", svc.urls[0]+"/v1/payments", testAPIKey, key, newPayment("cust-cut", 100))
	}
	if r := pay("cut-before"); r.Status != http.StatusCreated {
		t.Fatalf("before the cut: %d %s", r.Status, r.Body)
	}

	const ttl = time.Second
	proxy.setCut(true)
	cutAt := time.Now()
	var refusedAt time.Time
	for i := 0; ; i++ {
		sent := time.Now()
		r := pay(fmt.Sprintf("cut-%d", i))
		if r.Status == http.StatusServiceUnavailable && strings.Contains(string(r.Body), "partition-not-held") {
			refusedAt = sent
			break
		}
		if r.Status == http.StatusCreated && sent.After(cutAt.Add(ttl)) {
			t.Fatalf("a payment asked %v after the cut (lease TTL %v) was charged", sent.Sub(cutAt), ttl)
		}
		if time.Since(cutAt) > 10*ttl {
			t.Fatalf("still charging %v after the cut: %d %s", time.Since(cutAt), r.Status, r.Body)
		}
	}
	captured := len(bank.ledger(t, "capture", ""))
	for i := range 5 {
		if r := pay(fmt.Sprintf("cut-after-%d", i)); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("cut off, payment %d: %d %s, want 503", i, r.Status, r.Body)
		}
	}
	if got := len(bank.ledger(t, "capture", "")); got != captured {
		t.Fatalf("%d captures while cut off, want none (%d before)", got-captured, captured)
	}

	// Reconnected: the partitions come back (new leases, higher tokens),
	// the client's retry is charged, and the intents recorded while cut
	// off are completed by the recovery worker: each once.
	proxy.setCut(false)
	reconnected := time.Now()
	eventually(t, 30*time.Second, "charging again after the reconnect", func() bool {
		return pay("cut-after-0").Status == http.StatusCreated
	})
	eventually(t, 30*time.Second, "every recorded intent completed", func() bool {
		return dbCount(t, svc.dbURL, `SELECT count(*) FROM payments WHERE status <> 'succeeded'`) == 0
	})
	rows := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`)
	perRef := map[string]int{}
	for _, c := range bank.ledger(t, "capture", "") {
		perRef[c.Reference]++
	}
	for ref, n := range perRef {
		if n != 1 {
			t.Fatalf("payment %s captured %d times", ref, n)
		}
	}
	if len(perRef) != rows {
		t.Fatalf("%d payments captured for %d payment rows", len(perRef), rows)
	}
	t.Logf("refused %v after the cut (TTL %v); charging again %v after the reconnect", refusedAt.Sub(cutAt), ttl, time.Since(reconnected))
}

// cutProxy forwards TCP connections to one address until it is cut: then
// it drops every open connection and holds new ones unanswered, like a
// network partition between its clients and the target.
type cutProxy struct {
	addr string
	cut  atomic.Bool
	mu   sync.Mutex
	open map[net.Conn]bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String(), open: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setCut(true) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, target)
		}
	}()
	return p
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut.Load() {
		return false
	}
	for _, c := range cs {
		p.open[c] = true
	}
	return true
}

func (p *cutProxy) serve(c net.Conn, target string) {
	if p.cut.Load() {
		p.mu.Lock()
		p.open[c] = true // held unanswered; closed when the cut ends
		p.mu.Unlock()
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// setCut cuts the link (dropping every open connection) or restores it.
func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut.Store(cut)
	for c := range p.open {
		c.Close()
		delete(p.open, c)
	}
}
