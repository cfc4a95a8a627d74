package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/proc"
	"github.com/payonce/payonce/internal/testenv"
)

// The binaries under test, built once per test run from this checkout.
var build struct {
	once sync.Once
	dir  string
	bins map[string]string
	err  error
}

func binaries(t *testing.T) map[string]string {
	t.Helper()
	build.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		build.dir, build.err = os.MkdirTemp("", "payonce-it-bin-")
		if build.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build.bins, build.err = proc.Build(ctx, root, build.dir,
			"./services/coordinator/cmd/coordinator",
			"./services/bank/cmd/bank",
			"./services/payments/cmd/payments",
			"./services/orders/cmd/orders",
		)
	})
	if build.err != nil {
		t.Fatalf("build binaries: %v", build.err)
	}
	return build.bins
}

func removeBinaries() {
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// logWriter sends process output to the test log only when -v is given,
// so a failing test's output stays readable.
func logWriter() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return nil
}

// startProcess starts bin and stops it (SIGTERM) when the test ends; a
// failing test prints its output.
func startProcess(t *testing.T, name, bin string, env []string, readyURL string) *proc.Process {
	t.Helper()
	p, err := proc.Start(name, bin, env, logWriter())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		if t.Failed() && !testing.Verbose() {
			t.Logf("output of %s:\n%s", name, tail(p.Output(), 4000))
		}
	})
	if readyURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := proc.WaitReady(ctx, p, readyURL); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// coordinators is a 3-node coordinator cluster of real processes. It runs
// with TLS as a deployment does: the API over HTTPS with client
// certificates and authorisation by identity, Raft over mutual TLS. pki is
// the stack's CA: every service instance of the test gets its certificate
// from it, and the test itself talks to the coordinator as the operator
// (do picks the admin client for a coordinator's address).
type coordinators struct {
	urls []string
	env  [][]string
	proc []*proc.Process
	bin  string
	t    *testing.T
	pki  *pki
}

// tlsClients maps a TLS server's host:port to the client the test uses
// with it (the stack's admin identity): do looks the address up, so
// call(..., coord.urls[0]+...) needs no client of its own.
var tlsClients sync.Map

// secureNATSURLs holds the URLs of NATS servers that require TLS
// (secureNATS); services on any other NATS get NATS_TLS=false.
var secureNATSURLs sync.Map

func startCoordinators(t *testing.T, extraEnv ...string) *coordinators {
	t.Helper()
	bin := binaries(t)["coordinator"]
	c := &coordinators{bin: bin, t: t, pki: testPKI(t)}
	admin, err := identity.HTTPClient(c.pki.issue(t, identity.AdminCLI), 30*time.Second, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	httpPorts := make([]int, 3)
	for i := range 3 {
		raftPort := freePort(t)
		httpPorts[i] = freePort(t)
		url := fmt.Sprintf("https://127.0.0.1:%d", httpPorts[i])
		tlsClients.Store(fmt.Sprintf("127.0.0.1:%d", httpPorts[i]), admin)
		t.Cleanup(func() { tlsClients.Delete(fmt.Sprintf("127.0.0.1:%d", httpPorts[i])) })
		c.urls = append(c.urls, url)
		peers = append(peers, fmt.Sprintf("c%d=127.0.0.1:%d=%s", i+1, raftPort, url))
		c.env = append(c.env, append([]string{
			fmt.Sprintf("COORDINATOR_NODE_ID=c%d", i+1),
			// c1 alone bootstraps; its leader admits c2 and c3.
			fmt.Sprintf("COORDINATOR_BOOTSTRAP=%t", i == 0),
			fmt.Sprintf("COORDINATOR_RAFT_BIND=127.0.0.1:%d", raftPort),
			fmt.Sprintf("COORDINATOR_HTTP_ADDR=127.0.0.1:%d", httpPorts[i]),
			"COORDINATOR_DATA_DIR=" + filepath.Join(t.TempDir(), fmt.Sprintf("c%d", i+1)),
			"COORDINATOR_HEARTBEAT_TIMEOUT=300ms",
			"COORDINATOR_ELECTION_TIMEOUT=300ms",
			"COORDINATOR_LEADER_LEASE_TIMEOUT=200ms",
			"COORDINATOR_TICK_INTERVAL=50ms",
			"LOG_LEVEL=warn",
		}, c.pki.env(t, identity.ID{Service: identity.Coordinator, Instance: fmt.Sprintf("c%d", i+1)})...))
	}
	c.proc = make([]*proc.Process, 3)
	for i := range 3 {
		c.env[i] = append(append(c.env[i], "COORDINATOR_PEERS="+strings.Join(peers, ",")), extraEnv...)
		c.proc[i] = startProcess(t, fmt.Sprintf("coordinator-%d", i+1), bin, c.env[i], "")
	}
	for i := range 3 {
		waitReadyTLS(t, c.proc[i], c.urls[i]+"/readyz", admin)
	}
	return c
}

// waitReadyTLS is proc.WaitReady for an HTTPS server that client trusts.
func waitReadyTLS(t *testing.T, p *proc.Process, url string, client *http.Client) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready at %s: %s; output:\n%s", p.Name, url, last, tail(p.Output(), 4000))
		}
		select {
		case <-p.Done():
			t.Fatalf("%s exited before it was ready (%v); output:\n%s", p.Name, p.ExitErr(), tail(p.Output(), 4000))
		case <-tick.C:
		}
	}
}

// testPKIs is the CA of each running top-level test: its coordinators,
// service instances and bank get their certificates from one CA, whichever
// of its subtests starts them.
var (
	testPKIsMu sync.Mutex
	testPKIs   = map[string]*sharedPKI{}
)

type sharedPKI struct {
	pki   *pki
	users int
}

// testPKI returns the CA of t's top-level test, made on first use. Its
// directory lives as long as some test that asked for it runs: not the
// directory of the first subtest that asked (parallel subtests share it,
// and the first may end first), but one removed when the last user ends.
func testPKI(t *testing.T) *pki {
	t.Helper()
	root, _, _ := strings.Cut(t.Name(), "/")
	testPKIsMu.Lock()
	defer testPKIsMu.Unlock()
	s, ok := testPKIs[root]
	if !ok {
		dir, err := os.MkdirTemp("", "payonce-it-pki-")
		if err != nil {
			t.Fatal(err)
		}
		p, err := newPKIIn(dir)
		if err != nil {
			_ = os.RemoveAll(dir)
			t.Fatal(err)
		}
		s = &sharedPKI{pki: p}
		testPKIs[root] = s
	}
	s.users++
	t.Cleanup(func() {
		testPKIsMu.Lock()
		defer testPKIsMu.Unlock()
		if s.users--; s.users == 0 {
			delete(testPKIs, root)
			_ = os.RemoveAll(s.pki.dir)
		}
	})
	return s.pki
}

// bankSim is the simulated bank process, run as a deployment runs it: its
// payment API on apiURL over mutual TLS, admitting payments instances only
// (BANK_URL of the payments instances), and the simulator's controls
// (faults, ledger, probes) on url, plain HTTP, for the tests to read.
type bankSim struct {
	url    string
	apiURL string
}

func startBank(t *testing.T, extraEnv ...string) *bankSim {
	t.Helper()
	port, adminPort := freePort(t), freePort(t)
	b := &bankSim{url: fmt.Sprintf("http://127.0.0.1:%d", adminPort), apiURL: fmt.Sprintf("https://127.0.0.1:%d", port)}
	pki := testPKI(t)
	env := append(append([]string{
		fmt.Sprintf("BANK_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("BANK_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"LOG_LEVEL=warn",
	}, pki.env(t, bankID)...), extraEnv...)
	// A test reaching the payment API itself (the OpenAPI check) does so
	// as a payments instance.
	asPayments, err := identity.HTTPClient(pki.issue(t, identity.ID{Service: identity.Payments, Instance: "payments-test"}), 30*time.Second, identity.Bank)
	if err != nil {
		t.Fatal(err)
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	tlsClients.Store(host, asPayments)
	t.Cleanup(func() { tlsClients.Delete(host) })
	startProcess(t, "bank", binaries(t)["bank"], env, b.url+"/readyz")
	return b
}

type ledgerEntry struct {
	Kind           string `json:"kind"`
	Reference      string `json:"reference"`
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"`
}

// ledger returns the bank's ledger entries of kind for reference ("" = all).
func (b *bankSim) ledger(t *testing.T, kind, reference string) []ledgerEntry {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/v1/ledger?kind=%s&reference=%s", b.url, kind, reference))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Entries []ledgerEntry `json:"entries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Entries
}

func (b *bankSim) setFaults(t *testing.T, faults map[string]any) {
	t.Helper()
	body, _ := json.Marshal(faults)
	req, _ := http.NewRequest(http.MethodPut, b.url+"/admin/faults", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("set bank faults: %v %v", resp, err)
	}
	resp.Body.Close()
}

const (
	testAPIKey  = "test-shop-key-0123456789"
	otherAPIKey = "other-shop-key-9876543210"
	peerAPIKey  = "payments-peer-key-0123456789"
	// ordersAtPaymentsKey is orders' key at payments (the reconciliation sweeper's reads).
	ordersAtPaymentsKey = "orders-at-payments-key-0123456789"
	paymentsKeys        = "shop:" + testAPIKey + ",other:" + otherAPIKey + ",peer:" + peerAPIKey + ",orders:" + ordersAtPaymentsKey
	ordersKeys          = "shop:" + testAPIKey + ",other:" + otherAPIKey
	// testInternalSecret is the services' INTERNAL_SECRET in these tests;
	// a test that plays a payonce service seals its events with testSeal.
	testInternalSecret = "test-internal-secret-0123456789"
)

var testSeal = events.NewSealKey(testInternalSecret)

// serviceGroup is one or more instances of a service (payments or
// orders) sharing a database.
type serviceGroup struct {
	t    *testing.T
	name string
	bin  string
	env  []string
	urls []string
	// internalURLs are the instances' internal listeners (mutual TLS,
	// same-service peers only): what they register and forward to.
	internalURLs []string
	procs        []*proc.Process
	dbURL        string
	instances    int
	// pki issues each instance's certificate (identity <name>/<name>-N);
	// natsTLS says whether its NATS server takes them.
	pki     *pki
	natsTLS bool
}

// paymentsService is the payments service's group of instances.
type paymentsService = serviceGroup

// otelEnv makes a process export its spans to sink quickly.
func otelEnv(sinkURL string) []string {
	if sinkURL == "" {
		return nil
	}
	return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + sinkURL, "OTEL_BSP_SCHEDULE_DELAY=50"}
}

func newPaymentsService(t *testing.T, coord *coordinators, bank *bankSim, natsURL string, extraEnv ...string) *paymentsService {
	t.Helper()
	dbURL := testenv.NewDatabase(t)
	_, natsTLS := secureNATSURLs.Load(natsURL)
	return &serviceGroup{
		t:       t,
		pki:     coord.pki,
		natsTLS: natsTLS,
		name:    "payments",
		bin:     binaries(t)["payments"],
		dbURL:   dbURL,
		env: append([]string{
			"PAYMENTS_DATABASE_URL=" + dbURL,
			"NATS_URL=" + natsURL,
			"COORDINATOR_URLS=" + strings.Join(coord.urls, ","),
			"BANK_URL=" + bank.apiURL,
			"PAYMENTS_API_KEYS=" + paymentsKeys,
			"PAYMENTS_PEER_API_KEY=" + peerAPIKey,
			"INTERNAL_SECRET=" + testInternalSecret,
			"PAYONCE_DEV_MODE=true", // the test keys are short and readable
			"MEMBERSHIP_TTL=1500ms",
			"PAYMENTS_LOCK_TTL=3s",
			"PAYMENTS_RECOVERY_INTERVAL=200ms",
			"PAYMENTS_RECOVERY_AFTER=1s",
			"IDEMPOTENCY_LOCK_TIMEOUT=2s",
			"LOG_LEVEL=warn",
		}, extraEnv...),
	}
}

func newOrdersService(t *testing.T, coord *coordinators, natsURL string, extraEnv ...string) *serviceGroup {
	t.Helper()
	dbURL := testenv.NewDatabase(t)
	_, natsTLS := secureNATSURLs.Load(natsURL)
	return &serviceGroup{
		t:       t,
		pki:     coord.pki,
		natsTLS: natsTLS,
		name:    "orders",
		bin:     binaries(t)["orders"],
		dbURL:   dbURL,
		env: append([]string{
			"ORDERS_DATABASE_URL=" + dbURL,
			"NATS_URL=" + natsURL,
			"COORDINATOR_URLS=" + strings.Join(coord.urls, ","),
			"ORDERS_API_KEYS=" + ordersKeys,
			"INTERNAL_SECRET=" + testInternalSecret,
			"PAYONCE_DEV_MODE=true", // the test keys are short and readable
			"MEMBERSHIP_TTL=1500ms",
			"IDEMPOTENCY_LOCK_TIMEOUT=2s",
			"LOG_LEVEL=warn",
		}, extraEnv...),
	}
}

func (s *serviceGroup) instanceEnv(i int, addr, internalAddr string) []string {
	prefix := strings.ToUpper(s.name)
	instance := fmt.Sprintf("%s-%d", s.name, i+1)
	// Peers forward to each other's internal listener, over mutual TLS.
	env := append(append([]string{}, s.env...),
		prefix+"_ADDR="+addr,
		prefix+"_INTERNAL_ADDR="+internalAddr,
		prefix+"_ADVERTISE_URL=https://"+internalAddr,
		"INSTANCE_ID="+instance)
	// The instance's identity: the coordinator lets it hold its own
	// leases and member entry only.
	env = append(env, s.pki.env(s.t, identity.ID{Service: s.name, Instance: instance})...)
	if !s.natsTLS {
		env = append(env, "NATS_TLS=false") // a throwaway NATS without TLS
	}
	return env
}

// start starts one more instance (with extra env, e.g. a failpoint) and
// returns its index.
func (s *serviceGroup) start(extraEnv ...string) int {
	s.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	internalAddr := fmt.Sprintf("127.0.0.1:%d", freePort(s.t))
	i := s.instances
	s.instances++
	env := append(s.instanceEnv(i, addr, internalAddr), extraEnv...)
	url := "http://" + addr
	p := startProcess(s.t, fmt.Sprintf("%s-%d", s.name, i+1), s.bin, env, url+"/readyz")
	s.urls = append(s.urls, url)
	s.internalURLs = append(s.internalURLs, "https://"+internalAddr)
	s.procs = append(s.procs, p)
	return i
}

// restart starts instance i again on its old address, without extra env.
func (s *serviceGroup) restart(i int) {
	s.t.Helper()
	addr := strings.TrimPrefix(s.urls[i], "http://")
	internalAddr := strings.TrimPrefix(s.internalURLs[i], "https://")
	s.procs[i] = startProcess(s.t, fmt.Sprintf("%s-%d-restarted", s.name, i+1), s.bin, s.instanceEnv(i, addr, internalAddr), s.urls[i]+"/readyz")
}

// apiResponse is one HTTP exchange with a service.
type apiResponse struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
}

func (r apiResponse) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func call(method, url, apiKey, idemKey string, body any) apiResponse {
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			data, _ := json.Marshal(b)
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return apiResponse{Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	return do(req)
}

// newRequest is http.NewRequest, named for the helpers beside call.
func newRequest(method, url string, body io.Reader) (*http.Request, error) {
	return http.NewRequest(method, url, body)
}

// do sends req and reads the whole answer.
func do(req *http.Request) apiResponse {
	client := &http.Client{Timeout: 30 * time.Second}
	if c, ok := tlsClients.Load(req.URL.Host); ok && req.URL.Scheme == "https" {
		client = c.(*http.Client)
	}
	resp, err := client.Do(req)
	if err != nil {
		return apiResponse{Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: data, Err: err}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
