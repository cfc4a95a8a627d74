package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testPKI makes a CA in a temporary directory and issues ids' certificates
// for loopback; it returns the directory.
func testPKI(t *testing.T, ids ...identity.ID) string {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	ca, err := identity.NewCA("coordinator cmd test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := ca.WriteParty(dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1"}}, now, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestRunServesAndStops starts a one-node cluster through run, as main
// does, with the TLS a deployment has: it answers a caller without a
// certificate 401, grants a lock to a caller with one, and stops when the
// context is cancelled.
func TestRunServesAndStops(t *testing.T) {
	node := identity.ID{Service: identity.Coordinator, Instance: "c1"}
	caller := identity.ID{Service: identity.Payments, Instance: "payments-1"}
	pki := testPKI(t, node, caller)
	files := identity.PartyFiles(pki, node)
	raftAddr, httpAddr := freeAddr(t), freeAddr(t)
	base := "https://" + httpAddr
	env := map[string]string{
		"COORDINATOR_NODE_ID":              "c1",
		"COORDINATOR_BOOTSTRAP":            "true",
		"COORDINATOR_PEERS":                "c1=" + raftAddr + "=" + base,
		"COORDINATOR_RAFT_BIND":            raftAddr,
		"COORDINATOR_HTTP_ADDR":            httpAddr,
		"COORDINATOR_DATA_DIR":             t.TempDir(),
		"COORDINATOR_LOG_STORE":            os.Getenv("PAYONCE_TEST_LOG_STORE"),
		"COORDINATOR_HEARTBEAT_TIMEOUT":    "200ms",
		"COORDINATOR_ELECTION_TIMEOUT":     "200ms",
		"COORDINATOR_LEADER_LEASE_TIMEOUT": "100ms",
		"OTEL_TRACES_EXPORTER":             "none",
		"TLS_CERT_FILE":                    files.Cert,
		"TLS_KEY_FILE":                     files.Key,
		"TLS_CA_FILE":                      files.CA,
	}
	client, err := identity.HTTPClient(identity.PartyFiles(pki, caller), 10*time.Second, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
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
	// A client that trusts the CA but presents no certificate: the TLS
	// handshake succeeds (the probes stay open to health checks), the lock
	// is refused.
	anonymous, err := identity.HTTPClient(identity.Files{Cert: files.Cert, Key: files.Key, CA: files.CA}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	anonymous.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil
	resp, err := anonymous.Post(base+"/v1/locks/x/leases", "application/json", strings.NewReader(`{"request_id":"r0","ttl_ms":5000}`))
	if err != nil {
		t.Fatalf("acquire without a certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("acquire without a certificate: %s, want 401", resp.Status)
	}
	// The caller is payments-1: it may hold locks in its own service's
	// namespace (payments:…) only.
	resp, err = client.Post(base+"/v1/locks/payments:x/leases", "application/json", strings.NewReader(`{"request_id":"r","ttl_ms":5000}`))
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

// TestRunRefusesToStartWithoutTLS: a node given no certificate does not
// start (and opens no port) unless the stack says it is a laptop one; in
// dev mode it starts plain. A node with TLS refuses peers' plain URLs,
// which it could not forward to.
func TestRunRefusesToStartWithoutTLS(t *testing.T) {
	raftAddr, httpAddr := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"COORDINATOR_NODE_ID":   "c1",
		"COORDINATOR_BOOTSTRAP": "true",
		"COORDINATOR_PEERS":     "c1=" + raftAddr + "=http://" + httpAddr,
		"COORDINATOR_RAFT_BIND": raftAddr,
		"COORDINATOR_HTTP_ADDR": httpAddr,
		"COORDINATOR_DATA_DIR":  t.TempDir(),
		"OTEL_TRACES_EXPORTER":  "none",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := run(ctx, nil, func(k string) string { return env[k] }, io.Discard)
	if !errors.Is(err, ErrNoTLS) {
		t.Fatalf("run without TLS outside dev mode: %v, want ErrNoTLS", err)
	}
	for _, want := range []string{"TLS_CERT_FILE", "PAYONCE_DEV_MODE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not name %s", err, want)
		}
	}
	if ln, err := net.Listen("tcp", httpAddr); err != nil {
		t.Errorf("the refused node holds its API port: %v", err)
	} else {
		ln.Close()
	}

	env["PAYONCE_DEV_MODE"] = "false"
	if _, err := loadConfig(func(k string) string { return env[k] }); !errors.Is(err, ErrNoTLS) {
		t.Errorf("PAYONCE_DEV_MODE=false without TLS: %v, want ErrNoTLS", err)
	}
	env["PAYONCE_DEV_MODE"] = "true"
	cfg, err := loadConfig(func(k string) string { return env[k] })
	if err != nil || cfg.TLS != nil || cfg.Policy.Required {
		t.Errorf("dev mode without TLS: %+v, %v; want a plain node", cfg, err)
	}

	files := identity.PartyFiles(testPKI(t, identity.ID{Service: identity.Coordinator, Instance: "c1"}), identity.ID{Service: identity.Coordinator, Instance: "c1"})
	env["TLS_CERT_FILE"], env["TLS_KEY_FILE"], env["TLS_CA_FILE"] = files.Cert, files.Key, files.CA
	if _, err := loadConfig(func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "https://") {
		t.Errorf("TLS with a plain peer URL: %v, want a refusal naming https://", err)
	}
	env["TLS_KEY_FILE"] = ""
	if _, err := loadConfig(func(k string) string { return env[k] }); !errors.Is(err, identity.ErrIncomplete) {
		t.Errorf("two of the three TLS files: %v, want ErrIncomplete", err)
	}
}

func TestConfigRefusesBadPeers(t *testing.T) {
	for _, peers := range []string{"", "c1=127.0.0.1:1", "c2=127.0.0.1:1=http://x"} {
		env := map[string]string{"COORDINATOR_NODE_ID": "c1", "COORDINATOR_PEERS": peers, "PAYONCE_DEV_MODE": "true"}
		if _, err := loadConfig(func(k string) string { return env[k] }); err == nil {
			t.Errorf("peers %q accepted", peers)
		}
	}
}
