// Command devstack runs payonce's whole topology as local processes, with
// no Docker: a throwaway PostgreSQL cluster holding one database per
// service (migrated), a NATS server with JetStream, a 3-node Raft
// coordinator cluster, the simulated bank, two payments and two orders
// instances, and a trace viewer: Jaeger when its binary is found, otherwise
// a built-in OTLP sink that prints each finished trace as a tree.
//
// Everything listens on fixed loopback ports (see config), so the README's
// curl commands work as written. It prints every URL, and Ctrl-C stops every
// process gracefully and removes the throwaway data, leaving nothing
// running.
//
// It is the default way to run payonce on a machine with Go and the
// PostgreSQL server binaries; deploy/ has the docker compose equivalent.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/localnats"
	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/internal/otlpsink"
	"github.com/payonce/payonce/internal/proc"
	"github.com/payonce/payonce/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// The service commands the stack builds and runs.
var servicePackages = []string{
	"./services/coordinator/cmd/coordinator",
	"./services/bank/cmd/bank",
	"./services/payments/cmd/payments",
	"./services/orders/cmd/orders",
	"./services/console/cmd/console",
}

// stopGrace is how long a service gets to drain after SIGTERM.
const stopGrace = 15 * time.Second

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) (err error) {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cfg, err := loadConfig(getenv, root)
	if err != nil {
		return err
	}
	out := &syncWriter{w: stdout}
	s := &stack{out: out}
	// Whatever happens from here on, every started part is stopped in
	// reverse order of start.
	defer func() {
		fmt.Fprintln(out, "devstack: stopping")
		if stopErr := s.stop(); stopErr != nil && err == nil {
			err = stopErr
		}
		fmt.Fprintln(out, "devstack: stopped; nothing left running")
	}()
	startCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := s.start(startCtx, cfg, root); err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while starting: not a failure
		}
		return err
	}
	s.printReady(cfg)
	<-ctx.Done()
	return nil
}

// stack is the running topology: what was started, and how to stop it.
type stack struct {
	out      io.Writer
	tempDir  string
	stateDir string
	pkiDir   string
	stops    []func() error
	// admin is the operator's client (the admin identity): the stack asks
	// the coordinators with it whether they are ready, who leads and who
	// is a member.
	admin *http.Client

	urls      []namedURL
	procs     []*proc.Process
	managed   map[string]*managed  // by process name, for the control endpoint
	databases map[string]*database // by name, for the control endpoint
	trace     traceViewer
	sink      *otlpsink.Sink // the built-in trace sink, when Jaeger does not run
	jaegerPid int
}

type namedURL struct{ name, url string }

// onStop registers f to run at shutdown, before everything registered earlier.
func (s *stack) onStop(f func() error) { s.stops = append(s.stops, f) }

func (s *stack) stop() error {
	var errs []error
	for i := len(s.stops) - 1; i >= 0; i-- {
		if err := s.stops[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *stack) start(ctx context.Context, cfg config, root string) error {
	fmt.Fprintf(s.out, "devstack: building the services into %s\n", cfg.BinDir)
	bins, err := proc.Build(ctx, root, cfg.BinDir, servicePackages...)
	if err != nil {
		return err
	}
	s.tempDir, err = os.MkdirTemp("", "payonce-devstack-")
	if err != nil {
		return err
	}
	s.onStop(func() error { return os.RemoveAll(s.tempDir) })
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	s.stateDir = cfg.StateDir

	otlp, err := s.startTraces(ctx, cfg)
	if err != nil {
		return fmt.Errorf("traces: %w", err)
	}
	// Spans leave each process within 200ms, so a trace is complete soon
	// after its last hop and the sink's quiet period can call it finished.
	common := []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp,
		"OTEL_BSP_SCHEDULE_DELAY=200",
		"LOG_LEVEL=" + cfg.LogLevel,
		"LOG_FORMAT=text",
		// A laptop stack: the README's demo keys are accepted.
		"PAYONCE_DEV_MODE=true",
	}

	fmt.Fprintln(s.out, "devstack: starting PostgreSQL")
	pg, err := localpg.Start(ctx, localpg.Options{Durable: true, Port: cfg.PostgresPort})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.onStop(pg.Stop)
	// One login role per service, owning only its database, and the
	// migrate role, as in compose (docs/adr/0041-database-roles.md). The
	// services get their role's password as a file.
	databaseURLs, passwordFiles, err := s.provisionDatabases(ctx, pg)
	if err != nil {
		return err
	}
	// The superuser's URL, for an operator's experiments such as making a
	// service's database refuse connections (docs/failure-scenarios.md);
	// readable by this user only, removed on stop.
	superuserFile := filepath.Join(s.stateDir, "postgres-superuser.url")
	if err := os.WriteFile(superuserFile, []byte(pg.URL("postgres")+"\n"), 0o600); err != nil {
		return err
	}
	s.onStop(func() error { return os.Remove(superuserFile) })

	// Three nodes, so payonce's streams are replicated (R3) as in
	// production: an acknowledged event survives the loss of any one node.
	fmt.Fprintln(s.out, "devstack: starting a 3-node NATS JetStream cluster")
	// Every party gets a certificate from a CA made for this run; NATS
	// admits only those, each with its service's permissions.
	pki, err := s.issueCertificates(cfg)
	if err != nil {
		return err
	}
	var natsPorts []int
	if cfg.NATSPort != 0 {
		natsPorts = []int{cfg.NATSPort, cfg.NATSPort + 1, cfg.NATSPort + 2}
	}
	nats, err := localnats.StartCluster(localnats.ClusterOptions{Ports: natsPorts, Dir: filepath.Join(s.tempDir, "jetstream"),
		Node: localnats.Options{Security: pki.natsSecurity()}})
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	s.onStop(func() error { nats.Shutdown(); return nil })
	// One line per node; a client given any of them learns the others.
	for i, n := range nats.Nodes {
		name := "nats"
		if i > 0 {
			name = fmt.Sprintf("nats-%d", i+1)
		}
		s.urls = append(s.urls, namedURL{name, n.URL()})
	}

	fmt.Fprintln(s.out, "devstack: starting 3 coordinators (Raft)")
	coordURLs, err := s.startCoordinators(ctx, cfg, bins["coordinator"], pki, common)
	if err != nil {
		return err
	}

	fmt.Fprintln(s.out, "devstack: starting the bank (simulated)")
	// As deployed: the payment API over mutual TLS (payments instances
	// only), the simulator's controls on the README's plain port.
	bankURL := fmt.Sprintf("http://127.0.0.1:%d", cfg.BankPort)
	bankAPIURL := fmt.Sprintf("https://127.0.0.1:%d", cfg.BankAPIPort)
	bank, err := s.startProcess("bank", bins["bank"], append(append([]string{
		fmt.Sprintf("BANK_ADDR=127.0.0.1:%d", cfg.BankAPIPort),
		fmt.Sprintf("BANK_ADMIN_ADDR=127.0.0.1:%d", cfg.BankPort),
	}, pki.env(identity.ID{Service: identity.Bank, Instance: "bank"})...), common...))
	if err != nil {
		return err
	}
	if err := proc.WaitReady(ctx, bank, bankURL+"/readyz"); err != nil {
		return err
	}
	s.urls = append(s.urls, namedURL{"bank", bankURL})

	peerKey, err := randomKey()
	if err != nil {
		return err
	}
	// Orders' key at payments: its reconciliation sweeper reads the
	// payment of an order left pending.
	ordersKey, err := randomKey()
	if err != nil {
		return err
	}
	// The services' shared secret (event seals, forwarding signatures,
	// cursors): random per run, like the peer key.
	internalSecret, err := randomKey()
	if err != nil {
		return err
	}
	callers := DemoCaller + ":" + DemoAPIKey + "," + DemoCaller2 + ":" + DemoAPIKey2
	coordinators := "COORDINATOR_URLS=" + strings.Join(coordURLs, ",")
	fmt.Fprintf(s.out, "devstack: starting %d payments and %d orders instances\n", len(cfg.PaymentsPorts), len(cfg.OrdersPorts))
	groups := []struct {
		name          string
		ports         []int
		internalPorts []int
		env           []string
	}{
		{"payments", cfg.PaymentsPorts, cfg.PaymentsInternalPorts, []string{
			"PAYMENTS_DATABASE_URL=" + databaseURLs["payments"],
			"PAYMENTS_DATABASE_PASSWORD_FILE=" + passwordFiles["payments"],
			"PAYMENTS_API_KEYS=" + callers + ",peer:" + peerKey + ",orders:" + ordersKey,
			"PAYMENTS_PEER_API_KEY=" + peerKey,
			"BANK_URL=" + bankAPIURL,
			"INTERNAL_SECRET=" + internalSecret,
		}},
		{"orders", cfg.OrdersPorts, cfg.OrdersInternalPorts, []string{
			"ORDERS_DATABASE_URL=" + databaseURLs["orders"],
			"ORDERS_DATABASE_PASSWORD_FILE=" + passwordFiles["orders"],
			"ORDERS_API_KEYS=" + callers,
			"INTERNAL_SECRET=" + internalSecret,
			fmt.Sprintf("ORDERS_PAYMENTS_URL=http://127.0.0.1:%d", cfg.PaymentsPorts[0]),
			"ORDERS_PAYMENTS_API_KEY=" + ordersKey,
		}},
	}
	for _, g := range groups {
		env := append(append([]string{"NATS_URL=" + nats.URL(), coordinators}, g.env...), common...)
		var started []*proc.Process
		var urls []string
		for i, port := range g.ports {
			prefix := strings.ToUpper(g.name)
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			internalAddr := fmt.Sprintf("127.0.0.1:%d", g.internalPorts[i])
			name := fmt.Sprintf("%s-%d", g.name, i+1)
			// Peers forward to (and hand over on) the internal listener,
			// mutual TLS between instances of the service.
			p, err := s.startProcess(name, bins[g.name], append(append([]string{
				prefix + "_ADDR=" + addr,
				prefix + "_INTERNAL_ADDR=" + internalAddr,
				prefix + "_ADVERTISE_URL=https://" + internalAddr,
				"INSTANCE_ID=" + name,
			}, pki.env(identity.ID{Service: g.name, Instance: name})...), env...))
			if err != nil {
				return err
			}
			started = append(started, p)
			urls = append(urls, "http://"+addr)
		}
		for i, p := range started {
			if err := proc.WaitReady(ctx, p, urls[i]+"/readyz"); err != nil {
				return err
			}
			s.urls = append(s.urls, namedURL{p.Name, urls[i]})
		}
		if err := waitMembers(ctx, s.admin, coordURLs[0], g.name, len(g.ports)); err != nil {
			return err
		}
	}
	// Registered after the services, so at shutdown a database stopped from
	// the console is given back before they drain.
	s.manageDatabases(pg.URL("postgres"), migrations.Services())
	return s.startConsole(ctx, cfg, bins["console"], coordURLs, bankURL, pki, common)
}

// startProcess starts a service binary; at shutdown it gets SIGTERM and
// stopGrace to drain. Its pid is written to the state dir while it runs.
// The control endpoint (control.go) may stop, kill, pause and restart it
// meanwhile; shutdown stops whichever process runs under the name then.
func (s *stack) startProcess(name, bin string, env []string) (*proc.Process, error) {
	m := &managed{name: name, bin: bin, env: env, out: s.out, pidFile: filepath.Join(s.stateDir, name+".pid")}
	p, err := m.start()
	if err != nil {
		return nil, err
	}
	if s.managed == nil {
		s.managed = map[string]*managed{}
	}
	s.managed[name] = m
	s.procs = append(s.procs, p)
	s.onStop(m.shutdown)
	return p, nil
}

// exitedOnSignal reports whether err is only the news that the process
// ended because of a signal (SIGTERM from us, or a SIGKILL someone sent
// while trying docs/failure-scenarios.md), which is no failure of the stack.
func exitedOnSignal(err error) bool {
	var exit interface{ ExitCode() int }
	return errors.As(err, &exit) && exit.ExitCode() == -1
}

// startCoordinators starts the three nodes with TLS, as a deployment runs
// them: the API over HTTPS asking for client certificates, Raft over
// mutual TLS, each node with its own certificate from the run's CA.
func (s *stack) startCoordinators(ctx context.Context, cfg config, bin string, pki *devPKI, common []string) ([]string, error) {
	var peers, urls []string
	for i := range 3 {
		url := fmt.Sprintf("https://127.0.0.1:%d", cfg.CoordinatorPorts[i])
		urls = append(urls, url)
		peers = append(peers, fmt.Sprintf("c%d=127.0.0.1:%d=%s", i+1, cfg.RaftPorts[i], url))
	}
	var started []*proc.Process
	for i := range 3 {
		id := fmt.Sprintf("c%d", i+1)
		// c1 alone is told to bootstrap (it does so only with an empty data
		// dir and peers that belong to no cluster); its leader admits the
		// others, and a restart of any of them keeps its state.
		p, err := s.startProcess("coordinator-"+id, bin, append([]string{
			"COORDINATOR_NODE_ID=" + id,
			fmt.Sprintf("COORDINATOR_BOOTSTRAP=%t", i == 0),
			"COORDINATOR_PEERS=" + strings.Join(peers, ","),
			fmt.Sprintf("COORDINATOR_RAFT_BIND=127.0.0.1:%d", cfg.RaftPorts[i]),
			fmt.Sprintf("COORDINATOR_HTTP_ADDR=127.0.0.1:%d", cfg.CoordinatorPorts[i]),
			"COORDINATOR_DATA_DIR=" + filepath.Join(s.tempDir, "raft-"+id),
		}, append(pki.env(identity.ID{Service: identity.Coordinator, Instance: id}), common...)...))
		if err != nil {
			return nil, err
		}
		started = append(started, p)
	}
	for i, p := range started {
		if err := proc.WaitReadyWith(ctx, p, urls[i]+"/readyz", s.admin); err != nil {
			return nil, err
		}
		s.urls = append(s.urls, namedURL{p.Name, urls[i]})
	}
	return urls, nil
}

func (s *stack) printReady(cfg config) {
	var b strings.Builder
	b.WriteString("devstack: ready\n")
	pids := map[string]int{}
	for _, p := range s.procs {
		pids[p.Name] = p.Pid()
	}
	for _, u := range s.urls {
		if pid, ok := pids[u.name]; ok {
			fmt.Fprintf(&b, "  %-22s %-48s pid %d\n", u.name, u.url, pid)
		} else {
			fmt.Fprintf(&b, "  %-22s %s\n", u.name, u.url)
		}
	}
	fmt.Fprintf(&b, "  %-22s %s\n", "traces", s.trace.describe())
	if s.jaegerPid != 0 {
		fmt.Fprintf(&b, "  %-22s pid %d\n", "jaeger", s.jaegerPid)
	}
	fmt.Fprintf(&b, "  %-22s Authorization: Bearer %s (caller %q)\n", "API key", DemoAPIKey, DemoCaller)
	fmt.Fprintf(&b, "  %-22s %s (admin: %s)\n", "certificates", s.pkiDir, identity.PartyFiles(s.pkiDir, identity.AdminCLI).Cert)
	fmt.Fprintf(&b, "  %-22s %s\n", "pid files", s.stateDir)
	b.WriteString("devstack: press Ctrl-C to stop and remove everything\n")
	_, _ = io.WriteString(s.out, b.String())
}

func randomKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// syncWriter serialises writes from every process's log and the trace
// printer, so a printed trace tree is never cut by a log line.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
