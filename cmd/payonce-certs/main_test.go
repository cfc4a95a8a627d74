package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/identity"
)

func runCerts(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"payonce-certs"}, args...), os.Getenv, &out); err != nil {
		t.Fatalf("payonce-certs %v: %v\n%s", args, err, out.String())
	}
	return out.String()
}

func TestIssuesEveryComposePartyAndRotates(t *testing.T) {
	dir := t.TempDir()
	out := runCerts(t, "-dir", dir)
	ca, err := identity.LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, p := range composeParties() {
		f := identity.PartyFiles(dir, p.ID)
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		got, err := identity.Of(pair.Leaf)
		if err != nil || got != p.ID {
			t.Fatalf("%s: certificate names %v, %v", p.ID, got, err)
		}
		opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if len(p.Hosts) > 0 {
			opts.DNSName = p.Hosts[0]
		}
		if _, err := pair.Leaf.Verify(opts); err != nil {
			t.Fatalf("%s: %v", p.ID, err)
		}
		if info, _ := os.Stat(f.Key); info.Mode().Perm() != 0o600 {
			t.Errorf("%s: key mode %v, want 0600", p.ID, info.Mode())
		}
	}
	if !strings.Contains(out, "made a new CA") {
		t.Fatalf("first run did not say it made a CA:\n%s", out)
	}

	// A second run keeps the CA and the fresh certificates.
	before, _ := os.ReadFile(filepath.Join(dir, "orders-1.crt"))
	out = runCerts(t, "-dir", dir)
	after, _ := os.ReadFile(filepath.Join(dir, "orders-1.crt"))
	if !bytes.Equal(before, after) || !strings.Contains(out, "using the CA") {
		t.Fatalf("second run replaced a fresh certificate:\n%s", out)
	}
	// -force rotates the leaves under the same CA.
	runCerts(t, "-dir", dir, "-force")
	rotated, _ := os.ReadFile(filepath.Join(dir, "orders-1.crt"))
	if bytes.Equal(before, rotated) {
		t.Fatal("-force kept the old certificate")
	}
	if again, err := identity.LoadCA(dir); err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("-force changed the CA: %v", err)
	}
}

func TestNamedParties(t *testing.T) {
	dir := t.TempDir()
	runCerts(t, "-dir", dir, "orders/orders-7=orders-7.internal,10.0.0.7")
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "orders-7.crt"), filepath.Join(dir, "orders-7.key"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pair.Leaf.DNSNames) != 1 || len(pair.Leaf.IPAddresses) != 1 {
		t.Fatalf("hosts: %v %v", pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	for _, bad := range []string{"orders", "Orders/x", "orders/"} {
		if err := run(context.Background(), []string{"payonce-certs", "-dir", dir, bad}, os.Getenv, &bytes.Buffer{}); err == nil {
			t.Errorf("party %q accepted", bad)
		}
	}
}
