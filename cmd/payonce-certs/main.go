// Command payonce-certs makes the development PKI of a payonce stack: a CA
// (ca.crt, ca.key) and one certificate and key per party (<name>.crt,
// <name>.key), each naming its party's identity as a URI SAN
// (spiffe://payonce/<service>/<instance>; see internal/identity).
//
// Usage:
//
//	payonce-certs [-dir DIR] [-validity 2160h] [-force] [-new-ca] [party ...]
//
// A party is service/instance, optionally followed by =host,host for the
// names and addresses it serves on (orders/orders-1=orders-1,localhost).
// With no party named it issues the parties of deploy/docker-compose.yml.
//
// Run it again to rotate: it keeps the CA in DIR and re-issues every
// certificate that is missing, not signed by that CA, or past two thirds of
// its life (-force re-issues all). Files are replaced atomically and the
// services re-read them on the next handshake. -new-ca starts a new CA;
// see docs/security.md for rotating a CA without an outage.
//
// This is a development CA. In production, bring your own CA (cert-manager,
// SPIRE, Vault, a company CA) and issue the same kind of certificates with
// it; payonce only needs the files.
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "payonce-certs:", err)
		os.Exit(1)
	}
}

// composeParties are the parties of deploy/docker-compose.yml, with the
// service names compose gives them as host names; localhost and 127.0.0.1
// let a process on the host reach a published port with the same files.
func composeParties() []identity.Party {
	loopback := []string{"localhost", "127.0.0.1"}
	host := func(names ...string) []string { return append(names, loopback...) }
	parties := []identity.Party{
		// One certificate for the three nodes of the NATS cluster (as make
		// dev does): each presents it to clients and, over mutual TLS, to
		// the other nodes on the cluster routes.
		{ID: identity.ID{Service: identity.NATS, Instance: "nats"}, Hosts: host("nats", "nats-1", "nats-2", "nats-3")},
		{ID: identity.ID{Service: identity.Bank, Instance: "bank"}, Hosts: host("bank")},
		{ID: identity.AdminCLI},
		// The console reads the coordinators' status and membership as
		// itself (any identity may read them; none may without one).
		{ID: identity.ID{Service: identity.Console, Instance: "console"}, Hosts: host("console")},
	}
	for i := 1; i <= 3; i++ {
		parties = append(parties, identity.Party{
			ID:    identity.ID{Service: identity.Coordinator, Instance: fmt.Sprintf("c%d", i)},
			Hosts: host(fmt.Sprintf("coordinator-%d", i)),
		})
	}
	for _, service := range []string{identity.Orders, identity.Payments} {
		for i := 1; i <= 2; i++ {
			instance := fmt.Sprintf("%s-%d", service, i)
			parties = append(parties, identity.Party{ID: identity.ID{Service: service, Instance: instance}, Hosts: host(instance)})
		}
	}
	return parties
}

func parseParty(spec string) (identity.Party, error) {
	idPart, hosts, _ := strings.Cut(spec, "=")
	service, instance, ok := strings.Cut(idPart, "/")
	if !ok {
		return identity.Party{}, fmt.Errorf("party %q: want service/instance[=host,host]", spec)
	}
	p := identity.Party{ID: identity.ID{Service: service, Instance: instance}}
	if err := p.ID.Validate(); err != nil {
		return identity.Party{}, fmt.Errorf("party %q: %w", spec, err)
	}
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			p.Hosts = append(p.Hosts, h)
		}
	}
	return p, nil
}

func run(_ context.Context, args []string, _ func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("payonce-certs", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dir := fs.String("dir", "certs", "directory for ca.crt, ca.key and the parties' files")
	validity := fs.Duration("validity", identity.DefaultLeafValidity, "lifetime of each party's certificate")
	force := fs.Bool("force", false, "re-issue every certificate, even those still fresh")
	newCA := fs.Bool("new-ca", false, "make a new CA even if DIR holds one (then re-issue everything)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	parties := composeParties()
	if fs.NArg() > 0 {
		parties = nil
		for _, spec := range fs.Args() {
			p, err := parseParty(spec)
			if err != nil {
				return err
			}
			parties = append(parties, p)
		}
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return fmt.Errorf("certificate dir: %w", err)
	}
	now := time.Now()
	ca, err := identity.LoadCA(*dir)
	switch {
	case err == nil && !*newCA:
		fmt.Fprintf(stdout, "using the CA in %s (expires %s)\n", *dir, ca.Cert.NotAfter.Format(time.DateOnly))
	case err == nil || errors.Is(err, os.ErrNotExist):
		if ca, err = identity.NewCA("payonce development CA", now, identity.DefaultCAValidity); err != nil {
			return err
		}
		if err := ca.WriteCA(*dir); err != nil {
			return err
		}
		*force = true
		fmt.Fprintf(stdout, "made a new CA in %s (expires %s)\n", *dir, ca.Cert.NotAfter.Format(time.DateOnly))
	default:
		return err
	}
	for _, p := range parties {
		files := identity.PartyFiles(*dir, p.ID)
		if !*force && fresh(files.Cert, ca, p, now) {
			fmt.Fprintf(stdout, "  kept   %-40s %s\n", p.ID, files.Cert)
			continue
		}
		if _, err := ca.WriteParty(*dir, p, now, *validity); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "  issued %-40s %s\n", p.ID, files.Cert)
	}
	return nil
}

// fresh reports whether certFile is p's certificate, signed by ca, naming
// every host p serves on (a party that gained a host name, like NATS when
// it became a cluster, gets a new one), with more than a third of its life
// left: worth keeping.
func fresh(certFile string, ca *identity.CA, p identity.Party, now time.Time) bool {
	id := p.ID
	data, err := os.ReadFile(certFile)
	if err != nil {
		return false
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || cert.CheckSignatureFrom(ca.Cert) != nil {
		return false
	}
	if got, err := identity.Of(cert); err != nil || got != id {
		return false
	}
	for _, h := range p.Hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) > life/3
}
