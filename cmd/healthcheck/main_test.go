package main

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

func TestCheck(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	defer srv.Close()

	if err := check(http.DefaultClient, srv.URL, time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := check(http.DefaultClient, srv.URL, time.Second); err == nil {
		t.Fatal("503 counted as healthy")
	}
	srv.Close()
	if err := check(http.DefaultClient, srv.URL, time.Second); err == nil {
		t.Fatal("a closed server counted as healthy")
	}
	if err := run([]string{"healthcheck"}, func(string) string { return "" }); err == nil {
		t.Fatal("no URL accepted")
	}
}

// TestCheckOverTLS: with the container's identity in TLS_*, an HTTPS
// server whose certificate the CA signed is checked (and sees the
// container's certificate); one signed by another CA is unhealthy, not
// trusted blindly.
func TestCheckOverTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := identity.NewCA("healthcheck test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	server := identity.ID{Service: identity.Coordinator, Instance: "c1"}
	serverFiles, err := ca.WriteParty(dir, identity.Party{ID: server, Hosts: []string{"127.0.0.1"}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := identity.APIServerConfig(serverFiles)
	if err != nil {
		t.Fatal(err)
	}
	var caller identity.ID
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, _ = identity.Caller(r)
	}))
	// Served on a TLS listener of its own: httptest's StartTLS would put
	// its own certificate in front of the identity's.
	srv.Listener = tls.NewListener(srv.Listener, cfg)
	srv.Start()
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "https://", 1)

	env := map[string]string{"TLS_CERT_FILE": serverFiles.Cert, "TLS_KEY_FILE": serverFiles.Key, "TLS_CA_FILE": serverFiles.CA}
	getenv := func(k string) string { return env[k] }
	if err := run([]string{"healthcheck", url + "/readyz"}, getenv); err != nil {
		t.Fatalf("TLS server of the container's CA: %v", err)
	}
	if caller != server {
		t.Errorf("the check presented %v, want the container's identity %v", caller, server)
	}

	// A server with another CA's certificate (httptest's own).
	stranger := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	stranger.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	stranger.StartTLS()
	defer stranger.Close()
	if err := run([]string{"healthcheck", stranger.URL + "/readyz"}, getenv); err == nil {
		t.Error("a server whose certificate another CA signed counted as healthy")
	}
	env["TLS_KEY_FILE"] = ""
	if err := run([]string{"healthcheck", url + "/readyz"}, getenv); err == nil {
		t.Error("an incomplete TLS_* set accepted")
	}
}
