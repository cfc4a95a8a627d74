// Command nats-exporter serves, in the Prometheus format, the NATS numbers
// payonce's dashboards and alerts need. NATS's monitoring port speaks JSON
// (/varz, /jsz), which Prometheus cannot scrape; this reads it on every
// scrape and answers with:
//
//	nats_up                                   1 when the node answered
//	nats_connections                          client connections now
//	nats_in_msgs_total, nats_out_msgs_total   messages through the node
//	nats_slow_consumers_total                 clients the node had to cut off
//	nats_jetstream_stream_messages{stream}    messages kept per stream (DEADLETTER: dead letters)
//	nats_jetstream_consumer_pending{stream,consumer}      not yet delivered
//	nats_jetstream_consumer_ack_pending{stream,consumer}  delivered, not yet acked
//	nats_jetstream_consumer_redelivered{stream,consumer}  redelivered, not yet acked
//
// each with a server label: it reads every node of a cluster (a
// comma-separated NATS_MONITOR_URL), and a replicated stream appears once
// per node that holds a replica.
//
// It is part of the compose stack (deploy/docker-compose.yml), not of
// payonce's services. The NATS project's prometheus-nats-exporter does this
// and more; it is not reachable from this project's build machines, and the
// few series above are all the dashboards use (docs/observability.md).
//
// Environment: NATS_MONITOR_URL (http://127.0.0.1:8222; several, comma-separated, for a cluster), EXPORTER_ADDR
// (127.0.0.1:7777). /metrics, and /healthz for the container healthcheck.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "nats-exporter:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends. All wiring is here; tests call it too.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	monitorURL := getenv("NATS_MONITOR_URL")
	if monitorURL == "" {
		monitorURL = "http://127.0.0.1:8222"
	}
	var monitorURLs []string
	for _, u := range strings.Split(monitorURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			monitorURLs = append(monitorURLs, strings.TrimSuffix(u, "/"))
		}
	}
	addr := getenv("EXPORTER_ADDR")
	if addr == "" {
		addr = "127.0.0.1:7777"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(monitorURLs, &http.Client{Timeout: 3 * time.Second}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "nats-exporter: serving http://%s/metrics from %s\n", ln.Addr(), monitorURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
