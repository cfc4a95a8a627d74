package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/proc"
)

// DemoCaller and DemoAPIKey are the API caller the README's curl commands
// use, the same as deploy/docker-compose.yml's. The key is public on
// purpose: the stack listens on loopback only and holds throwaway data.
// DemoCaller2 and DemoAPIKey2 are a second caller, so a user can see from
// the README that one caller never sees another's orders or payments.
const (
	DemoCaller  = "demo"
	DemoAPIKey  = "payonce-demo-key-1"
	DemoCaller2 = "demo2"
	DemoAPIKey2 = "payonce-demo-key-2"
)

// config is the dev stack's whole configuration, read from the
// environment in this one place. The defaults are fixed loopback ports, so
// the README's curl commands work as written; a port of 0 picks a free one
// (tests use that). The ports are deploy/docker-compose.yml's, so one set
// of curl commands works against both. The table in README.md mirrors it.
type config struct {
	// DEVSTACK_POSTGRES_PORT (55432) and DEVSTACK_NATS_PORT (4222).
	PostgresPort, NATSPort int
	// DEVSTACK_COORDINATOR_PORTS (8101,8102,8103): the coordinators' HTTP
	// APIs; DEVSTACK_RAFT_PORTS (7101,7102,7103): their Raft transports.
	CoordinatorPorts, RaftPorts []int
	// DEVSTACK_BANK_PORT (8099): the simulated bank's controls (faults,
	// ledger, metrics), plain HTTP for the README's curl commands.
	// BankAPIPort (a free port) is its payment API, mutual TLS, which only
	// payments instances reach.
	BankPort, BankAPIPort int
	// DEVSTACK_PAYMENTS_PORTS (8090,8091) and DEVSTACK_ORDERS_PORTS
	// (8080,8081): one instance per port (the public API).
	PaymentsPorts, OrdersPorts []int
	// PaymentsInternalPorts and OrdersInternalPorts (free ports, one per
	// instance) are the instances' internal listeners: mutual TLS between
	// instances of one service, for forwarded requests and hand-overs. No
	// one but a peer calls them, so they are not fixed.
	PaymentsInternalPorts, OrdersInternalPorts []int
	// DEVSTACK_CONSOLE_PORT (8070): the console's page
	// (services/console); DEVSTACK_CONTROL_PORT (8071): the dev stack's
	// control endpoint, through which the console kills, stops, pauses and
	// restarts processes (loopback only, dev stack only).
	ConsolePort, ControlPort int
	// DEVSTACK_OTLP_PORT (4318): where every process sends its spans
	// (OTLP/HTTP), to Jaeger or to the built-in sink.
	OTLPPort int
	// DEVSTACK_JAEGER_UI_PORT (16686): Jaeger's query API and UI.
	JaegerUIPort int
	// DEVSTACK_TRACES (auto): "jaeger" runs Jaeger (JAEGER_BIN, else
	// `jaeger` on PATH), "sink" prints each finished trace as a tree,
	// "auto" picks Jaeger when it is found and the sink otherwise.
	Traces    string
	JaegerBin string
	// DEVSTACK_TRACE_QUIET (1s): a trace counts as finished, and is
	// printed, once no span of it arrived for this long.
	TraceQuiet time.Duration
	// DEVSTACK_TRACE_DIR (empty: off): with the built-in sink, also write
	// each finished trace to <dir>/<trace id>.json (the dump format
	// cmd/tracesvg reads), so a trace can be rendered after the stack stopped.
	TraceDir string
	// DEVSTACK_BIN_DIR (.cache/bin in the module): where the service
	// binaries are built.
	BinDir string
	// DEVSTACK_LOG_LEVEL (warn): the services' LOG_LEVEL; their logs are
	// printed with the instance's name in front.
	LogLevel string
	// DEVSTACK_STATE_DIR (.cache/devstack in the module): holds one
	// <name>.pid file per process while the stack runs, so scripts (and
	// docs/failure-scenarios.md) can kill a chosen one.
	StateDir string
	// DEVSTACK_CONSOLE_OUTAGE_FOR (60s): how long the console's "stop a
	// database for a while" keeps it away (the console's CONSOLE_OUTAGE_FOR).
	ConsoleOutageFor time.Duration
}

func loadConfig(getenv func(string) string, moduleDir string) (config, error) {
	env := envconfig.New(getenv)
	var badPorts []error
	ports := func(key, def string) []int {
		var out []int
		for _, s := range env.List(key, strings.Split(def, ",")) {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 0 || n > 65535 {
				badPorts = append(badPorts, fmt.Errorf("%s: %q is not a TCP port", key, s))
			}
			out = append(out, n)
		}
		return out
	}
	cfg := config{
		PostgresPort:     env.Int("DEVSTACK_POSTGRES_PORT", 55432),
		NATSPort:         env.Int("DEVSTACK_NATS_PORT", 4222),
		BankPort:         env.Int("DEVSTACK_BANK_PORT", 8099),
		OTLPPort:         env.Int("DEVSTACK_OTLP_PORT", 4318),
		ConsolePort:      env.Int("DEVSTACK_CONSOLE_PORT", 8070),
		ControlPort:      env.Int("DEVSTACK_CONTROL_PORT", 8071),
		JaegerUIPort:     env.Int("DEVSTACK_JAEGER_UI_PORT", 16686),
		Traces:           env.String("DEVSTACK_TRACES", "auto"),
		JaegerBin:        env.String("JAEGER_BIN", ""),
		TraceQuiet:       env.Duration("DEVSTACK_TRACE_QUIET", time.Second),
		TraceDir:         env.String("DEVSTACK_TRACE_DIR", ""),
		BinDir:           env.String("DEVSTACK_BIN_DIR", filepath.Join(moduleDir, ".cache", "bin")),
		LogLevel:         env.String("DEVSTACK_LOG_LEVEL", "warn"),
		StateDir:         env.String("DEVSTACK_STATE_DIR", filepath.Join(moduleDir, ".cache", "devstack")),
		ConsoleOutageFor: env.Duration("DEVSTACK_CONSOLE_OUTAGE_FOR", time.Minute),
		CoordinatorPorts: ports("DEVSTACK_COORDINATOR_PORTS", "8101,8102,8103"),
		RaftPorts:        ports("DEVSTACK_RAFT_PORTS", "7101,7102,7103"),
		PaymentsPorts:    ports("DEVSTACK_PAYMENTS_PORTS", "8090,8091"),
		OrdersPorts:      ports("DEVSTACK_ORDERS_PORTS", "8080,8081"),
	}
	cfg.PaymentsInternalPorts = make([]int, len(cfg.PaymentsPorts))
	cfg.OrdersInternalPorts = make([]int, len(cfg.OrdersPorts))
	if err := errors.Join(append([]error{env.Err()}, badPorts...)...); err != nil {
		return cfg, err
	}
	switch {
	case len(cfg.CoordinatorPorts) != 3 || len(cfg.RaftPorts) != 3:
		return cfg, fmt.Errorf("DEVSTACK_COORDINATOR_PORTS and DEVSTACK_RAFT_PORTS: want 3 ports each (a 3-node Raft cluster)")
	case len(cfg.PaymentsPorts) == 0 || len(cfg.OrdersPorts) == 0:
		return cfg, fmt.Errorf("DEVSTACK_PAYMENTS_PORTS and DEVSTACK_ORDERS_PORTS: want at least one port each")
	case cfg.Traces != "auto" && cfg.Traces != "jaeger" && cfg.Traces != "sink":
		return cfg, fmt.Errorf("DEVSTACK_TRACES=%q: want auto, jaeger or sink", cfg.Traces)
	case cfg.TraceQuiet <= 0:
		return cfg, fmt.Errorf("DEVSTACK_TRACE_QUIET must be positive")
	}
	// Pick the free ports now: instances must know each other's addresses
	// before they start.
	for _, p := range cfg.portRefs() {
		if *p != 0 {
			continue
		}
		free, err := proc.FreePort()
		if err != nil {
			return cfg, err
		}
		*p = free
	}
	return cfg, nil
}

// portRefs lists every port the stack listens on except PostgreSQL's and
// NATS's, which their starters pick themselves when 0.
func (c *config) portRefs() []*int {
	refs := []*int{&c.BankPort, &c.BankAPIPort, &c.OTLPPort, &c.JaegerUIPort, &c.ConsolePort, &c.ControlPort}
	for _, list := range [][]int{c.CoordinatorPorts, c.RaftPorts, c.PaymentsPorts, c.OrdersPorts, c.PaymentsInternalPorts, c.OrdersInternalPorts} {
		for i := range list {
			refs = append(refs, &list[i])
		}
	}
	return refs
}

// moduleRoot finds the directory holding payonce's go.mod, from the
// working directory up, so `go run ./cmd/devstack` and the tests (which run
// in cmd/devstack) both build from the same checkout.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module github.com/payonce/payonce\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("not inside the payonce module: run devstack from the repository (make dev)")
}
