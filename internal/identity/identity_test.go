package identity

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA("test CA", now, time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func writeParty(t *testing.T, ca *CA, dir string, id ID, now time.Time, validity time.Duration) Files {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, CACertFile)); err != nil {
		if err := ca.WriteCA(dir); err != nil {
			t.Fatal(err)
		}
	}
	f, err := ca.WriteParty(dir, Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// handshake runs a TLS handshake between server and client over a loopback
// TCP connection and returns what each side saw.
func handshake(t *testing.T, server, client *tls.Config) (serverState tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	return handshakeAs(t, server, client, "localhost")
}

// handshakeAs is handshake with the client expecting the server to be
// serverName (the host name it dialled).
func handshakeAs(t *testing.T, server, client *tls.Config, serverName string) (serverState tls.ConnectionState, serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client = client.Clone()
	client.ServerName = serverName
	done := make(chan error, 1)
	go func() {
		conn, err := tls.Dial("tcp", ln.Addr().String(), client)
		if err == nil {
			// In TLS 1.3 the server judges the client's certificate after
			// the client has finished: read its verdict (an alert or EOF).
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			// An accepting server sends one byte.
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		done <- err
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	srv := tls.Server(raw, server)
	serverErr = srv.Handshake()
	if errors.Is(serverErr, os.ErrDeadlineExceeded) {
		t.Fatalf("server handshake timed out instead of deciding: %v", serverErr)
	}
	state := srv.ConnectionState()
	if serverErr == nil {
		_, _ = srv.Write([]byte{1})
	}
	clientErr = <-done
	return state, serverErr, clientErr
}

func TestIDRoundTrip(t *testing.T) {
	id := ID{Service: "orders", Instance: "orders-1"}
	if got := id.String(); got != "spiffe://payonce/orders/orders-1" {
		t.Fatalf("String() = %q", got)
	}
	back, err := Parse(id.String())
	if err != nil || back != id {
		t.Fatalf("Parse(%q) = %v, %v", id, back, err)
	}
	for _, bad := range []string{
		"spiffe://other/orders/orders-1",     // foreign trust domain
		"https://payonce/orders/orders-1",    // not SPIFFE
		"spiffe://payonce/orders",            // no instance
		"spiffe://payonce/orders/a/b",        // too deep
		"spiffe://payonce/Orders/orders-1",   // not a DNS label
		"spiffe://payonce/orders/orders-1?x", // query
		"spiffe://u@payonce/orders/orders-1", // user info
	} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestFileName(t *testing.T) {
	for id, want := range map[ID]string{
		{Service: "orders", Instance: "orders-1"}: "orders-1",
		{Service: "bank", Instance: "bank"}:       "bank",
		{Service: "coordinator", Instance: "c1"}:  "coordinator-c1",
		AdminCLI:                                  "admin-cli",
	} {
		if got := id.FileName(); got != want {
			t.Errorf("%s: FileName() = %q, want %q", id, got, want)
		}
	}
}

func TestMutualTLSCarriesTheClientIdentity(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	serverFiles := writeParty(t, ca, dir, ID{Service: "bank", Instance: "bank"}, now, time.Hour)
	clientID := ID{Service: "payments", Instance: "payments-2"}
	clientFiles := writeParty(t, ca, dir, clientID, now, time.Hour)

	server, err := ServerConfig(serverFiles, AllowServices(Payments))
	if err != nil {
		t.Fatal(err)
	}
	client, err := ClientConfig(clientFiles, Bank)
	if err != nil {
		t.Fatal(err)
	}
	state, serr, cerr := handshake(t, server, client)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: server %v, client %v", serr, cerr)
	}
	got, err := Peer(&state)
	if err != nil || got != clientID {
		t.Fatalf("server saw %v, %v; want %v", got, err, clientID)
	}
}

func TestServerRefuses(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	serverFiles := writeParty(t, ca, dir, ID{Service: "bank", Instance: "bank"}, now, time.Hour)
	server, err := ServerConfig(serverFiles, AllowServices(Payments))
	if err != nil {
		t.Fatal(err)
	}
	trustOnly := &tls.Config{RootCAs: mustClient(t, serverFiles).RootCAs}

	foreign := mustCA(t, now)
	foreignDir := t.TempDir()
	foreignFiles := writeParty(t, foreign, foreignDir, ID{Service: "payments", Instance: "payments-1"}, now, time.Hour)
	foreignClient := mustClient(t, foreignFiles)
	foreignClient.RootCAs = trustOnly.RootCAs // it trusts the real server; the server must not trust it

	expiredFiles := writeParty(t, ca, filepath.Join(dir, "expired"), ID{Service: "payments", Instance: "payments-1"}, now.Add(-48*time.Hour), time.Hour)
	ordersFiles := writeParty(t, ca, filepath.Join(dir, "orders"), ID{Service: "orders", Instance: "orders-1"}, now, time.Hour)

	for name, client := range map[string]*tls.Config{
		"no client certificate":         trustOnly,
		"certificate from a foreign CA": foreignClient,
		"expired certificate":           mustClient(t, expiredFiles),
		"identity not admitted":         mustClient(t, ordersFiles),
	} {
		t.Run(name, func(t *testing.T) {
			state, serr, cerr := handshake(t, server, client)
			if serr == nil {
				id, _ := Peer(&state)
				t.Fatalf("server accepted the handshake (peer %v)", id)
			}
			if cerr == nil {
				t.Fatalf("the client was not told (server: %v)", serr)
			}
			t.Logf("server: %v; client: %v", serr, cerr)
		})
	}
}

func mustClient(t *testing.T, f Files, want ...string) *tls.Config {
	t.Helper()
	c, err := ClientConfig(f, want...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientRefusesTheWrongServer(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	impostor := writeParty(t, ca, dir, ID{Service: "orders", Instance: "orders-1"}, now, time.Hour)
	clientFiles := writeParty(t, ca, dir, ID{Service: "payments", Instance: "payments-1"}, now, time.Hour)
	server, err := ServerConfig(impostor, nil)
	if err != nil {
		t.Fatal(err)
	}
	// payments wants the bank; an orders instance is a party of the stack
	// but not the bank.
	_, _, cerr := handshake(t, server, mustClient(t, clientFiles, Bank))
	if cerr == nil || !strings.Contains(cerr.Error(), "may not connect") {
		t.Fatalf("client accepted an orders instance as the bank: %v", cerr)
	}
}

// A peer is dialled at an address its certificate does not name (a
// container's IP): PeerClientConfig accepts it by chain and identity, where
// ClientConfig's host-name check refuses it; and it still refuses another
// service's certificate and another CA's.
func TestPeerClientChecksIdentityNotHostName(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	self := writeParty(t, ca, dir, ID{Service: Orders, Instance: "orders-1"}, now, time.Hour)
	peer := writeParty(t, ca, dir, ID{Service: Orders, Instance: "orders-2"}, now, time.Hour)
	otherService := writeParty(t, ca, dir, ID{Service: Payments, Instance: "payments-1"}, now, time.Hour)
	foreign := writeParty(t, mustCA(t, now), t.TempDir(), ID{Service: Orders, Instance: "orders-2"}, now, time.Hour)
	client, err := PeerClientConfig(self, Orders)
	if err != nil {
		t.Fatal(err)
	}
	const elsewhere = "10.9.8.7" // not among the certificate's hosts
	serve := func(f Files) *tls.Config {
		t.Helper()
		c, err := ServerConfig(f, AllowServices(Orders))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, serr, cerr := handshakeAs(t, serve(peer), client, elsewhere); serr != nil || cerr != nil {
		t.Fatalf("an orders peer at an address its certificate does not name: server %v, client %v", serr, cerr)
	}
	if _, _, cerr := handshakeAs(t, serve(peer), mustClient(t, self, Orders), elsewhere); cerr == nil {
		t.Fatal("the control failed: ClientConfig accepted a host name the certificate does not carry")
	}
	if _, _, cerr := handshakeAs(t, serve(otherService), client, elsewhere); cerr == nil || !strings.Contains(cerr.Error(), "may not connect") {
		t.Fatalf("a payments instance was accepted as an orders peer: %v", cerr)
	}
	foreignServer, err := ServerConfig(foreign, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, cerr := handshakeAs(t, foreignServer, client, elsewhere); cerr == nil || !strings.Contains(cerr.Error(), "certificate") {
		t.Fatalf("an orders certificate from another CA was accepted: %v", cerr)
	}
	if _, err := PeerClientConfig(self); err == nil {
		t.Fatal("a peer client that accepts any service was made")
	}
}

func TestCertificateWithoutIdentityIsRefused(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	issued, err := ca.Issue(Party{ID: ID{Service: "bank", Instance: "bank"}}, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Of(issued.Cert); err != nil {
		t.Fatalf("Of(issued) = %v", err)
	}
	issued.Cert.URIs = nil
	if _, err := Of(issued.Cert); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Of(no URI) = %v, want ErrNoIdentity", err)
	}
	if _, err := Peer(&tls.ConnectionState{}); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("Peer(plain) = %v, want ErrNoIdentity", err)
	}
}

func TestRotatedCertificateIsUsedWithoutRestart(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	serverFiles := writeParty(t, ca, dir, ID{Service: "bank", Instance: "bank"}, now, time.Hour)
	clientFiles := writeParty(t, ca, dir, ID{Service: "payments", Instance: "payments-1"}, now, time.Hour)
	server, err := ServerConfig(serverFiles, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := mustClient(t, clientFiles)
	state, serr, cerr := handshake(t, server, client)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake: %v %v", serr, cerr)
	}
	before := state.PeerCertificates[0].SerialNumber

	// Rotate the client's certificate in place; the modification time must
	// differ for the reload to notice, so set it explicitly.
	writeParty(t, ca, dir, ID{Service: "payments", Instance: "payments-1"}, now, time.Hour)
	later := time.Now().Add(time.Minute)
	for _, f := range []string{clientFiles.Cert, clientFiles.Key} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	state, serr, cerr = handshake(t, server, client)
	if serr != nil || cerr != nil {
		t.Fatalf("handshake after rotation: %v %v", serr, cerr)
	}
	if after := state.PeerCertificates[0].SerialNumber; after.Cmp(before) == 0 {
		t.Fatal("the client still presents the certificate from before the rotation")
	}
}

func TestLoadCA(t *testing.T) {
	now := time.Now()
	ca := mustCA(t, now)
	dir := t.TempDir()
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Fatal("loaded another CA")
	}
	info, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v, %v: want 0600", info.Mode(), err)
	}
	// A key that is not the certificate's is refused, not used.
	other := mustCA(t, now)
	if err := (&CA{Cert: ca.Cert, Key: other.Key}).WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir); err == nil {
		t.Fatal("LoadCA accepted a key that is not the certificate's")
	}
}

func TestWithPassword(t *testing.T) {
	dsn, err := WithPassword("postgres://orders@db:5432/orders?sslmode=disable", "p@ss/word")
	if err != nil || dsn != "postgres://orders:p%40ss%2Fword@db:5432/orders?sslmode=disable" {
		t.Fatalf("WithPassword = %q, %v", dsn, err)
	}
}

func TestFilesFromEnv(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if _, ok, err := FilesFromEnv(get); ok || err != nil {
		t.Fatalf("nothing set: ok=%v err=%v", ok, err)
	}
	env["TLS_CERT_FILE"] = "a.crt"
	if _, _, err := FilesFromEnv(get); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("only the certificate set: %v", err)
	}
	env["TLS_KEY_FILE"], env["TLS_CA_FILE"] = "a.key", "ca.crt"
	if f, ok, err := FilesFromEnv(get); !ok || err != nil || f.CA != "ca.crt" {
		t.Fatalf("all set: %v %v %v", f, ok, err)
	}
}
