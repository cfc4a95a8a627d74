// Command console serves payonce's console: one web page that shows the
// ring, the Raft coordinators, the locks, the latest orders and payments and
// the idempotency counters of a running stack, live, and (in dev mode only)
// buttons that break things. See package console and docs/console.md.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/envconfig"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/telemetry"
	"github.com/payonce/payonce/services/console"
	consolehttp "github.com/payonce/payonce/services/console/http"
	"github.com/payonce/payonce/services/console/remote"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "console:", err)
		os.Exit(1)
	}
}

// config is everything the console reads from its environment; the
// defaults fit `make dev` and the compose stack's published ports.
type config struct {
	// CONSOLE_ADDR (127.0.0.1:8070): where the page is served.
	Addr string
	// CONSOLE_COORDINATOR_URLS (https://127.0.0.1:8101,8102,8103): every
	// coordinator node, to show each one's own view (with TLS_*: the
	// coordinators answer only callers with a certificate).
	CoordinatorURLs []string
	// CONSOLE_BANK_URL (http://127.0.0.1:8099): the simulated bank.
	BankURL string
	// CONSOLE_INSTANCE_URLS (orders-1=http://127.0.0.1:8080,
	// orders-2=http://127.0.0.1:8081, payments-1=http://127.0.0.1:8090,
	// payments-2=http://127.0.0.1:8091): each instance's public API. The
	// membership's addresses are the instances' internal listeners, which
	// answer peers of their own service only.
	InstanceURLs map[string]string
	// CONSOLE_API_KEY (payonce-demo-key-1): the demo caller's key, the only
	// credential the console uses; it reads orders and payments as that caller.
	APIKey string
	// CONSOLE_CALLER (demo): the caller the services map CONSOLE_API_KEY to
	// (their ORDERS_API_KEYS and PAYMENTS_API_KEYS, "caller:key"). The
	// services place the caller's customer on their rings, so the ring
	// lookup needs it to name the instance that serves a customer.
	Caller string
	// CONSOLE_DEV_MODE (false): allow the actions. Off, every action is
	// refused with 403 and the page only looks.
	DevMode bool
	// CONSOLE_ALLOWED_HOSTS (empty): host names, besides loopback addresses
	// and localhost, that the page and its API answer to (the Host header
	// of a request; consolehttp.AllowHosts refuses others with 421, the
	// defence against DNS rebinding). Set it to the name the console is
	// reached by when that is not loopback.
	AllowedHosts []string
	// CONSOLE_TOKEN or CONSOLE_TOKEN_FILE (empty): the token the page and
	// its API ask for (HTTP Basic password, any user name, or Bearer;
	// consolehttp.RequireToken). Required outside dev mode, and long and
	// random there (apikey.CheckSecret): the view is every lock, holder and
	// fencing token the coordinator shows the console's certificate. Dev
	// stacks leave it empty; the stack's dev mode is their credential.
	Token string
	// CONSOLE_CONTROL_URL (empty): the dev stack's control endpoint, for
	// process actions; empty under compose (the page shows commands).
	ControlURL string
	// CONSOLE_JAEGER_URL (empty): the Jaeger UI, for trace links.
	JaegerURL string
	// CONSOLE_TRACES_URL (empty): where a trace is fetched to draw it inline,
	// as <url>/<trace id>: Jaeger's query API (.../api/traces) or the dev
	// stack's control endpoint (.../traces).
	TracesURL string
	// CONSOLE_INTERVAL (500ms): how often the stack is read (the page's
	// update rate).
	Interval time.Duration
	// CONSOLE_CUSTOMERS (alice): customers watched from the start.
	Customers []string
	// CONSOLE_PAUSE_FOR (20s): how long "pause" freezes an instance; longer
	// than PAYMENTS_LOCK_TTL (15s) so its lease expires meanwhile.
	PauseFor time.Duration
	// CONSOLE_OUTAGE_FOR (60s): how long "stop a database" keeps a
	// service's database away, unless started again from the page.
	OutageFor time.Duration
	// TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE (empty: plain): the
	// console's identity (spiffe://payonce/console/console) and the CA it
	// trusts; needed when the coordinators run with TLS (https:// in
	// CONSOLE_COORDINATOR_URLS), as they do outside dev mode.
	TLS *identity.Files
}

func loadConfig(getenv func(string) string) (config, error) {
	env := envconfig.New(getenv)
	cfg := config{
		Addr: env.String("CONSOLE_ADDR", "127.0.0.1:8070"),
		CoordinatorURLs: env.List("CONSOLE_COORDINATOR_URLS",
			[]string{"https://127.0.0.1:8101", "https://127.0.0.1:8102", "https://127.0.0.1:8103"}),
		BankURL:      env.String("CONSOLE_BANK_URL", "http://127.0.0.1:8099"),
		InstanceURLs: map[string]string{},
		APIKey:       env.String("CONSOLE_API_KEY", "payonce-demo-key-1"),
		Caller:       env.String("CONSOLE_CALLER", console.DemoCaller),
		DevMode:      env.Bool("CONSOLE_DEV_MODE", false),
		AllowedHosts: env.List("CONSOLE_ALLOWED_HOSTS", nil),
		Token:        env.String("CONSOLE_TOKEN", ""),
		ControlURL:   env.String("CONSOLE_CONTROL_URL", ""),
		JaegerURL:    strings.TrimSuffix(env.String("CONSOLE_JAEGER_URL", ""), "/"),
		TracesURL:    strings.TrimSuffix(env.String("CONSOLE_TRACES_URL", ""), "/"),
		Interval:     env.Duration("CONSOLE_INTERVAL", 500*time.Millisecond),
		Customers:    env.List("CONSOLE_CUSTOMERS", []string{"alice"}),
		PauseFor:     env.Duration("CONSOLE_PAUSE_FOR", 20*time.Second),
		OutageFor:    env.Duration("CONSOLE_OUTAGE_FOR", time.Minute),
	}
	for _, pair := range env.List("CONSOLE_INSTANCE_URLS", []string{
		"orders-1=http://127.0.0.1:8080", "orders-2=http://127.0.0.1:8081",
		"payments-1=http://127.0.0.1:8090", "payments-2=http://127.0.0.1:8091"}) {
		name, url, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || name == "" || url == "" {
			return cfg, fmt.Errorf("CONSOLE_INSTANCE_URLS: %q is not instance=url", pair)
		}
		cfg.InstanceURLs[name] = url
	}
	files, tlsOn, err := identity.FilesFromEnv(func(k string) string { return env.String(k, "") })
	if err != nil {
		return cfg, err
	}
	if tlsOn {
		cfg.TLS = &files
	}
	if err := env.Err(); err != nil {
		return cfg, err
	}
	if cfg.Interval < 50*time.Millisecond {
		return cfg, fmt.Errorf("CONSOLE_INTERVAL=%s: at least 50ms", cfg.Interval)
	}
	if cfg.OutageFor < time.Second || cfg.OutageFor > 10*time.Minute {
		return cfg, fmt.Errorf("CONSOLE_OUTAGE_FOR=%s: between 1s and 10m (what the dev stack allows)", cfg.OutageFor)
	}
	if !apikey.ValidCaller(cfg.Caller) {
		return cfg, fmt.Errorf("CONSOLE_CALLER=%q: 1 to 64 letters, digits, '.', '_' or '-', like the services' callers", cfg.Caller)
	}
	if len(cfg.CoordinatorURLs) == 0 {
		return cfg, fmt.Errorf("CONSOLE_COORDINATOR_URLS: at least one URL")
	}
	if !cfg.DevMode {
		if cfg.Token == "" {
			return cfg, fmt.Errorf("CONSOLE_TOKEN (or CONSOLE_TOKEN_FILE) is required outside dev mode: the console shows every lock, holder and fencing token the coordinator shows it, to whoever reaches its port; give it a long random token (openssl rand -hex 32), or set CONSOLE_DEV_MODE=true on a dev stack")
		}
		if err := apikey.CheckSecret("CONSOLE_TOKEN", cfg.Token); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "console", Getenv: getenv, LogOutput: stdout})
	if err != nil {
		return err
	}
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(shutdownCtx)
	}()

	var client *http.Client
	if cfg.TLS != nil {
		if client, err = identity.HTTPClient(*cfg.TLS, 0); err != nil {
			return fmt.Errorf("console tls: %w", err)
		}
	}
	stack := remote.NewStack(remote.Config{CoordinatorURLs: cfg.CoordinatorURLs, BankURL: cfg.BankURL, InstanceURLs: cfg.InstanceURLs, APIKey: cfg.APIKey,
		TracesURL: cfg.TracesURL, Client: client})
	ccfg := console.Config{Stack: stack, Caller: cfg.Caller, DevMode: cfg.DevMode, JaegerURL: cfg.JaegerURL, Traces: cfg.TracesURL != "",
		Interval: cfg.Interval, Customers: cfg.Customers, PauseFor: cfg.PauseFor, OutageFor: cfg.OutageFor}
	if cfg.ControlURL != "" {
		ccfg.Control = remote.NewControl(cfg.ControlURL, 0)
	}
	c := console.New(ccfg)
	go func() { _ = c.Run(ctx) }()

	// The Host check comes first (a rebinding page gets 421 whatever it
	// sends), then the token, where there is one.
	var api http.Handler = consolehttp.NewHandler(c, cfg.DevMode, tel.Logger)
	if cfg.Token != "" {
		api = consolehttp.RequireToken(cfg.Token, api)
	}
	handler := httpkit.Router(httpkit.RouterConfig{
		API:     consolehttp.AllowHosts(cfg.AllowedHosts, api),
		Metrics: tel.MetricsHandler(),
		// The page's own requests (a view stream lasts as long as the tab)
		// are not traced: the traces a learner opens are the stack's. A
		// storm's requests carry the trace the console starts for it.
		TracerProvider: noop.NewTracerProvider(),
		Logger:         tel.Logger,
	})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	tel.Logger.InfoContext(ctx, "console listening", "url", "http://"+ln.Addr().String(), "dev_mode", cfg.DevMode,
		"control", cfg.ControlURL != "", "token", cfg.Token != "")
	// Request contexts derive from ctx, so the event streams end when the
	// console stops and the graceful shutdown does not wait for them.
	srv := &http.Server{Handler: handler, BaseContext: func(net.Listener) context.Context { return ctx }}
	return httpkit.Serve(ctx, srv, ln, 5*time.Second)
}
