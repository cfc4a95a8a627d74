package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/services/payments"
	paymentscoord "github.com/payonce/payonce/services/payments/coordinator"
)

// The partition design's guarantees on real processes (ADR 0070): payments
// instances under PAYMENTS_OWNERSHIP=partition (the default), real
// coordinators, PostgreSQL and NATS; only the bank is simulated.

// partitionTTL is the partition leases' TTL in these tests: short, so
// the tests see leases lapse and move.
const partitionTTL = time.Second

// partitionEnv makes leases short, so the tests see them lapse and move.
var partitionEnv = []string{"PAYMENTS_PARTITION_TTL=" + partitionTTL.String(), "PAYMENTS_PARTITION_DRAIN=500ms"}

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
		req, _ := newRequest("GET", coord.urls[0]+"/v1/locks/"+paymentscoord.LockName(name), nil)
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

// partitionHolder reads who holds partition name's lease (the lock
// paymentscoord.LockName(name), in payments' namespace) at the
// coordinator, and under which token ("" if nobody, or if no node could
// say: callers ask inside eventually).
func partitionHolder(t *testing.T, coord *coordinators, name string) (owner string, token uint64) {
	t.Helper()
	var lock struct {
		Holder struct {
			Owner string `json:"owner"`
			Token uint64 `json:"token"`
		} `json:"holder"`
	}
	// Only the leader answers (a follower says 503 not-leader), and the
	// leader may change under load: ask each node until one answers.
	var last apiResponse
	for _, u := range coord.urls {
		req, _ := newRequest("GET", u+"/v1/locks/"+paymentscoord.LockName(name), nil)
		last = do(req)
		switch {
		case last.Err != nil || last.Status == http.StatusServiceUnavailable:
			continue
		case last.Status == http.StatusNotFound:
			return "", 0
		case last.Status == http.StatusOK && json.Unmarshal(last.Body, &lock) == nil:
			return lock.Holder.Owner, lock.Holder.Token
		}
		break
	}
	// Mid-election: no holder known, and the caller's eventually asks again.
	t.Logf("lock %s: no coordinator answered: %d %v %s", name, last.Status, last.Err, last.Body)
	return "", 0
}

// TestPartitionOwnerKilledUnderLoad: two instances share the partitions
// while 8 clients pay continuously through payments-2 (which forwards the
// customers of payments-1's partitions to it). payments-1 is SIGKILLed:
// no release, no drain, its payments in flight abandoned anywhere between
// two commits. Every client retries with its key until it gets its
// payment. payments-2 takes every partition of payments-1 over, with
// strictly higher tokens, within the bound of issue #14 (takeoverBound);
// afterwards every key has exactly one payment, succeeded, and exactly one
// capture in the bank's ledger.
//
// The instances run with MEMBERSHIP_TTL six times the partition TTL: a
// survivor that waited for the dead instance's member entry rather than
// for its leases (the payments service caps the one at the other) would
// take over no earlier than 6 TTL less one heartbeat interval (2 TTL)
// after the kill, past the bound, and fail here.
func TestPartitionOwnerKilledUnderLoad(t *testing.T) { ownerKilledUnderLoad(t, false) }

// TestPartitionOwnerKilledWithTheCoordinatorLeader is the same with the
// coordinators' leader SIGKILLed at the same moment: nothing is lost or
// charged twice, and every partition of payments-1 is claimed by payments-2
// with a strictly higher token. Its takeover time is logged against
// takeoverBound, not asserted: the bound allows one election, and two
// coordinators left under this load may hold more than one (seen: the new
// leader stepped down 6 s later, its one follower having missed a 200 ms
// leader lease, and payments-2 lost every lease it held and took them again).
func TestPartitionOwnerKilledWithTheCoordinatorLeader(t *testing.T) { ownerKilledUnderLoad(t, true) }

func ownerKilledUnderLoad(t *testing.T, killLeader bool) {
	coord := startCoordinators(t)
	bank := startBank(t)
	svc := newPaymentsService(t, coord, bank, testenv.NATS(t), append(partitionEnv, "MEMBERSHIP_TTL="+(6*partitionTTL).String())...)
	svc.start()
	svc.start()
	victim := map[string]uint64{} // payments-1's partitions and their tokens
	eventually(t, 30*time.Second, "the partitions shared between the two instances", func() bool {
		clear(victim)
		held := 0
		for p := range payments.Partitions {
			name := payments.PartitionName(p)
			owner, token := partitionHolder(t, coord, name)
			switch owner {
			case "payments/payments-1":
				victim[name] = token
				held++
			case "payments/payments-2":
				held++
			}
		}
		return held == payments.Partitions && len(victim) > 0 && len(victim) < payments.Partitions
	})

	var seq atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var mu sync.Mutex
	keys := map[string]bool{}
	var retries atomic.Int64
	survivor := svc.urls[1]
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := time.NewTicker(50 * time.Millisecond) // a client's back-off between retries
			defer backoff.Stop()
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("kill-%d", seq.Add(1))
				customer := fmt.Sprintf("cust-%d-%d", c, seq.Load()%50)
				deadline := time.Now().Add(90 * time.Second)
				for {
					r := call("POST", survivor+"/v1/payments", testAPIKey, key, newPayment(customer, 100))
					if r.Status == http.StatusCreated {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s: still %d %s after 90s of retries", key, r.Status, r.Body)
						return
					}
					retries.Add(1)
					<-backoff.C
				}
				mu.Lock()
				keys[key] = true
				mu.Unlock()
			}
		}()
	}
	eventually(t, 20*time.Second, "load running", func() bool { return seq.Load() > 40 })

	db := dbConn(t, svc.dbURL)
	defer db.Close(context.Background())
	names := make([]string, 0, len(victim))
	for name := range victim {
		names = append(names, name)
	}
	fenceBefore := fenceRows(t, db, names)
	if len(fenceBefore) != len(names) {
		t.Fatalf("payments-1 holds %d partitions but %d fence rows name them", len(names), len(fenceBefore))
	}
	leader := -1
	if killLeader {
		leader = coordinatorLeader(t, coord)
	}
	if err := syscall.Kill(svc.procs[0].Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	if killLeader {
		coord.proc[leader].Kill()
	}
	to := watchTakeover(t, coord, db, "payments-1", fenceBefore, killedAt)
	bound := takeoverBound(t, coord)
	for _, name := range names {
		if took := to.claimSeen[name]; took > bound && !killLeader {
			t.Errorf("%s: claimed by the survivor %v after the kill, above the bound %v", name, took.Round(time.Millisecond), bound)
		}
	}
	// The coordinator agrees: payments-2 holds each lease, with a strictly
	// higher token, and that token is the one the fence row names.
	for name, token := range victim {
		eventually(t, 10*time.Second, name+" held by payments-2 under the fence row's token", func() bool {
			owner, now := partitionHolder(t, coord, name)
			return owner == "payments/payments-2" && now > token && partitionFence(t, svc.dbURL, name) == now
		})
	}
	paid := seq.Load()
	eventually(t, 60*time.Second, "load going on after the takeover", func() bool { return seq.Load() > paid+40 })
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	// Payments payments-1 left half-done finish on the new owner (its
	// recovery worker, or the clients' retries): none is lost.
	eventually(t, 60*time.Second, "every payment final", func() bool {
		return dbCount(t, svc.dbURL, `SELECT count(*) FROM payments WHERE status NOT IN ('succeeded', 'failed')`) == 0
	})
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments`); got != len(keys) {
		t.Fatalf("%d payment rows for %d keys", got, len(keys))
	}
	if got := dbCount(t, svc.dbURL, `SELECT count(*) FROM payments WHERE status <> 'succeeded'`); got != 0 {
		t.Fatalf("%d payments not succeeded", got)
	}
	perRef := map[string]int{}
	for _, c := range bank.ledger(t, "capture", "") {
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
	served := firstServed(t, db, names, killedAt)
	t.Logf("%d payments, %d retried answers; payments-1's %d partitions after its SIGKILL: ring without it (member entry expired) %v; "+
		"fence claims by payments-2 (PostgreSQL's clock) %v..%v, all seen %v; first payment finished by payments-2 in %d of them after %v..%v; "+
		"bound %v (partition TTL %v, MEMBERSHIP_TTL %v capped to it; coordinator leader killed too: %v)",
		len(keys), retries.Load(), len(victim), to.ringChanged.Round(time.Millisecond),
		to.claimedMin.Round(time.Millisecond), to.claimedMax.Round(time.Millisecond), to.allSeen.Round(time.Millisecond),
		len(served), minDuration(served).Round(time.Millisecond), maxDuration(served).Round(time.Millisecond),
		bound, partitionTTL, 6*partitionTTL, killLeader)
}

// takeoverBound is issue #14's bound on a dead owner's partitions being
// served again, from the configured values: the partition lease runs out
// (partitionTTL; the member entry, capped at it, no later), the
// coordinator ends it at its next tick (COORDINATOR_TICK_INTERVAL), one
// election if the coordinators lose their leader meanwhile, and a margin
// of one more partition TTL for the survivor's reaction.
//
// One election, in hashicorp/raft: a follower gives up on its leader
// after up to twice COORDINATOR_HEARTBEAT_TIMEOUT, and a candidate's vote
// may take up to twice COORDINATOR_ELECTION_TIMEOUT; a lease's end is
// late by at most that (docs/coordinator.md). The margin covers the ring's
// long poll returning, then per partition one Raft commit (the grant) and
// one PostgreSQL commit (the fence claim). The design already counts on a
// coordinator round trip within a third of the TTL (the renewal
// interval), so a whole TTL for those is load headroom on a shared 2-core
// machine, not slack in the code: a survivor that waited for anything
// longer than the lease (a member entry outliving it, an acquire that
// timed out and was asked again) still lands above it.
func takeoverBound(t *testing.T, coord *coordinators) time.Duration {
	t.Helper()
	election := 2*coordinatorSetting(t, coord, "COORDINATOR_HEARTBEAT_TIMEOUT") + 2*coordinatorSetting(t, coord, "COORDINATOR_ELECTION_TIMEOUT")
	return partitionTTL + coordinatorSetting(t, coord, "COORDINATOR_TICK_INTERVAL") + election + partitionTTL
}

// coordinatorLeader returns the index of the coordinators' leader.
func coordinatorLeader(t *testing.T, coord *coordinators) int {
	t.Helper()
	var leader int
	eventually(t, 10*time.Second, "a coordinator leader", func() bool {
		for _, u := range coord.urls {
			req, _ := newRequest("GET", u+"/v1/cluster", nil)
			r := do(req)
			var cluster struct {
				LeaderID string `json:"leader_id"`
			}
			if r.Err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &cluster) != nil {
				continue
			}
			if _, err := fmt.Sscanf(cluster.LeaderID, "c%d", &leader); err == nil && leader >= 1 && leader <= len(coord.urls) {
				leader--
				return true
			}
		}
		return false
	})
	return leader
}

// coordinatorSetting reads a duration the test coordinators were started
// with.
func coordinatorSetting(t *testing.T, coord *coordinators, name string) time.Duration {
	t.Helper()
	for _, kv := range coord.env[0] {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatalf("%s: %v", kv, err)
			}
			return d
		}
	}
	t.Fatalf("the coordinators have no %s", name)
	return 0
}

// fenceRow is a partition's fence row: the token that last claimed it and
// when (PostgreSQL's now() in the claiming transaction).
type fenceRow struct {
	token     uint64
	claimedAt time.Time
}

// fenceRows reads the fence rows of the partitions named, in one query.
func fenceRows(t *testing.T, db *pgx.Conn, names []string) map[string]fenceRow {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT resource, token, updated_at FROM fence_tokens WHERE resource = ANY($1)`, names)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]fenceRow{}
	for rows.Next() {
		var name string
		var r fenceRow
		if err := rows.Scan(&name, &r.token, &r.claimedAt); err != nil {
			t.Fatal(err)
		}
		out[name] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// takeover is what watchTakeover saw, each figure counted from the kill.
type takeover struct {
	ringChanged            time.Duration            // the coordinator's member list without the dead instance
	claimSeen              map[string]time.Duration // each partition's new claim, as this test first saw it
	claimedMin, claimedMax time.Duration            // the claims by PostgreSQL's own clock
	allSeen                time.Duration
}

// watchTakeover follows the takeover of the partitions in before (their
// fence rows at the kill) until every one has been claimed again with a
// higher token: one query of all their fence rows and one read of the
// member list per round, every 20ms, so the watching costs little and
// sees a claim within a round of it. (Checking each partition at the
// coordinator and on a fresh database connection in turn took 9 s a
// round under load, and that round was what the test used to report as
// the takeover time.)
func watchTakeover(t *testing.T, coord *coordinators, db *pgx.Conn, dead string, before map[string]fenceRow, killedAt time.Time) takeover {
	t.Helper()
	names := make([]string, 0, len(before))
	for name := range before {
		names = append(names, name)
	}
	to := takeover{claimSeen: map[string]time.Duration{}, claimedMin: time.Duration(math.MaxInt64)}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(to.claimSeen) < len(before) {
		if time.Since(killedAt) > time.Minute {
			t.Fatalf("a minute after the kill, %d of %d partitions claimed again", len(to.claimSeen), len(before))
		}
		if to.ringChanged == 0 && !memberListed(coord, "payments", dead) {
			to.ringChanged = time.Since(killedAt)
		}
		now := fenceRows(t, db, names)
		seen := time.Since(killedAt)
		for name, r := range now {
			if _, done := to.claimSeen[name]; done || r.token <= before[name].token {
				continue
			}
			to.claimSeen[name] = seen
			to.claimedMin = min(to.claimedMin, r.claimedAt.Sub(killedAt))
			to.claimedMax = max(to.claimedMax, r.claimedAt.Sub(killedAt))
		}
		<-tick.C
	}
	to.allSeen = maxDuration(to.claimSeen)
	return to
}

// memberListed reports whether the coordinator still lists instance as a
// member of service (true while no node can say).
func memberListed(coord *coordinators, service, instance string) bool {
	for _, u := range coord.urls {
		req, _ := newRequest("GET", u+"/v1/services/"+service+"/members", nil)
		r := do(req)
		if r.Err != nil || r.Status != http.StatusOK {
			continue
		}
		var v struct {
			Members []struct {
				Instance string `json:"instance"`
			} `json:"members"`
		}
		if json.Unmarshal(r.Body, &v) != nil {
			continue
		}
		for _, m := range v.Members {
			if m.Instance == instance {
				return true
			}
		}
		return false
	}
	return true
}

// firstServed returns, for each partition named that has one, how long
// after the kill its first payment written under its current fence token
// (the new owner's) finished.
func firstServed(t *testing.T, db *pgx.Conn, names []string, killedAt time.Time) map[string]time.Duration {
	t.Helper()
	rows, err := db.Query(context.Background(), `
		SELECT f.resource, min(p.updated_at) FROM fence_tokens f JOIN payments p ON p.fence_token = f.token
		WHERE f.resource = ANY($1) GROUP BY f.resource`, names)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]time.Duration{}
	for rows.Next() {
		var name string
		var at time.Time
		if err := rows.Scan(&name, &at); err != nil {
			t.Fatal(err)
		}
		out[name] = at.Sub(killedAt)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func minDuration(m map[string]time.Duration) time.Duration {
	if len(m) == 0 {
		return 0
	}
	out := time.Duration(math.MaxInt64)
	for _, d := range m {
		out = min(out, d)
	}
	return out
}

func maxDuration(m map[string]time.Duration) time.Duration {
	var out time.Duration
	for _, d := range m {
		out = max(out, d)
	}
	return out
}
