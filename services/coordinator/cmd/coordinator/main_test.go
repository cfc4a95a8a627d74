package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRunServesAndStops starts a one-node cluster through run, as main
// does, takes a lock over HTTP and stops it by cancelling the context.
func TestRunServesAndStops(t *testing.T) {
	raftAddr, httpAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"COORDINATOR_NODE_ID":              "c1",
		"COORDINATOR_BOOTSTRAP":            "true",
		"COORDINATOR_PEERS":                "c1=" + raftAddr + "=http://" + httpAddr,
		"COORDINATOR_RAFT_BIND":            raftAddr,
		"COORDINATOR_HTTP_ADDR":            httpAddr,
		"COORDINATOR_DATA_DIR":             t.TempDir(),
		"COORDINATOR_LOG_STORE":            os.Getenv("PAYONCE_TEST_LOG_STORE"),
		"COORDINATOR_HEARTBEAT_TIMEOUT":    "200ms",
		"COORDINATOR_ELECTION_TIMEOUT":     "200ms",
		"COORDINATOR_LEADER_LEASE_TIMEOUT": "100ms",
		"OTEL_TRACES_EXPORTER":             "none",
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard) }()

	base := "http://" + httpAddr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", err)
		}
		select {
		case err := <-errc:
			t.Fatalf("run exited early: %v", err)
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
	resp, err := http.Post(base+"/v1/locks/x/leases", "application/json", strings.NewReader(`{"request_id":"r","ttl_ms":5000}`))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("acquire: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestConfigRefusesBadPeers(t *testing.T) {
	for _, peers := range []string{"", "c1=127.0.0.1:1", "c2=127.0.0.1:1=http://x"} {
		env := map[string]string{"COORDINATOR_NODE_ID": "c1", "COORDINATOR_PEERS": peers}
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
			t.Errorf("peers %q accepted", peers)
		}
	}
}

func TestConfigRefusesUnknownLogStore(t *testing.T) {
	env := map[string]string{"COORDINATOR_NODE_ID": "c1", "COORDINATOR_PEERS": "c1=127.0.0.1:1=http://x", "COORDINATOR_LOG_STORE": "sqlite"}
	if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
		t.Error("COORDINATOR_LOG_STORE=sqlite accepted")
	}
}
