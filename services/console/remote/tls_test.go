package remote_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/console/remote"
)

// TestStackPresentsTheConsolesCertificate: with Config.Client set to the
// console's identity, a coordinator behind mutual TLS sees the console as
// the caller; without it, the coordinator sees no one (and answers 401).
func TestStackPresentsTheConsolesCertificate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, err := identity.NewCA("console remote test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	issue := func(id identity.ID) identity.Files {
		f, err := ca.WriteParty(dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1"}}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	console := identity.ID{Service: identity.Console, Instance: "console"}
	consoleFiles := issue(console)
	serverCfg, err := identity.APIServerConfig(issue(identity.ID{Service: identity.Coordinator, Instance: "c1"}))
	if err != nil {
		t.Fatal(err)
	}
	// A coordinator's node status route, as far as identity goes: 401
	// without a caller, the caller's name in the answer otherwise.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := identity.Caller(r)
		if err != nil {
			http.Error(w, "no certificate", http.StatusUnauthorized)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "c1", "state": "Leader", "leader_id": id.String()})
	}))
	srv.Listener = tls.NewListener(srv.Listener, serverCfg)
	srv.Start()
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "https://", 1)

	client, err := identity.HTTPClient(consoleFiles, 0, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	st, err := remote.NewStack(remote.Config{CoordinatorURLs: []string{url}, Client: client}).NodeStatus(context.Background(), url)
	if err != nil {
		t.Fatalf("node status with the console's certificate: %v", err)
	}
	if st.LeaderID != console.String() {
		t.Errorf("the coordinator saw %q, want the console %q", st.LeaderID, console)
	}

	// Trusting the CA but presenting nothing: refused.
	anonymous, err := identity.HTTPClient(consoleFiles, 0, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	anonymous.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = nil
	if _, err := remote.NewStack(remote.Config{CoordinatorURLs: []string{url}, Client: anonymous}).NodeStatus(context.Background(), url); err == nil ||
		!strings.Contains(err.Error(), "401") {
		t.Errorf("node status without a certificate: %v, want a 401", err)
	}
}
