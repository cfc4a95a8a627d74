package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/proc"
)

// TestExporterReadsARealServer runs a real NATS server with JetStream and
// its monitoring port, leaves one message delivered and unacked, and reads
// the exporter's /metrics: the series must say what the server holds, and
// when the server is gone, nats_up must say 0 instead of stale numbers.
func TestExporterReadsARealServer(t *testing.T) {
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		HTTPHost: "127.0.0.1", HTTPPort: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "orders.created", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "payments", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil { // delivered, never acked
		t.Fatal(err)
	}

	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// A second node that is down: its nats_up says so, and the first
	// node's numbers are there all the same.
	downPort, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	up, down := srv.MonitorAddr().String(), fmt.Sprintf("127.0.0.1:%d", downPort)
	env := map[string]string{"NATS_MONITOR_URL": "http://" + up + ",http://" + down, "EXPORTER_ADDR": addr}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, nil, func(k string) string { return env[k] }, io.Discard) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	metrics := scrape(t, ctx, "http://"+addr+"/metrics")
	for _, want := range []string{
		`nats_up{server="` + up + `"} 1`,
		`nats_up{server="` + down + `"} 0`,
		`nats_jetstream_stream_messages{server="` + up + `",stream="ORDERS"} 3`,
		`nats_jetstream_consumer_pending{consumer="payments",server="` + up + `",stream="ORDERS"} 2`,
		`nats_jetstream_consumer_ack_pending{consumer="payments",server="` + up + `",stream="ORDERS"} 1`,
		`nats_jetstream_consumer_redelivered{consumer="payments",server="` + up + `",stream="ORDERS"} 0`,
		`nats_connections{server="` + up + `"} 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}

	nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
	metrics = scrape(t, ctx, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, `nats_up{server="`+up+`"} 0`+"\n") || strings.Contains(metrics, "nats_jetstream_stream_messages") {
		t.Errorf("with NATS gone, /metrics should hold nats_up 0 and nothing else of NATS:\n%s", metrics)
	}
}

// scrape GETs url, retrying until the exporter listens (bounded by ctx).
func scrape(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body)
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("scrape %s: %v", url, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
