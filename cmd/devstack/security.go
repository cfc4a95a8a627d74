package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/localnats"
	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/migrations"
)

// provisionDatabases gives each service its login role and database on pg
// and migrates them as the migrate role. It returns each service's
// database URL (naming its role, without the password) and the file
// holding the role's password.
func (s *stack) provisionDatabases(ctx context.Context, pg *localpg.Cluster) (urls, passwordFiles map[string]string, err error) {
	roles := localpg.Roles{Services: map[string]string{}}
	if roles.Migrate, err = localpg.RandomPassword(); err != nil {
		return nil, nil, err
	}
	secrets := filepath.Join(s.tempDir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, nil, fmt.Errorf("secrets dir: %w", err)
	}
	urls, passwordFiles = map[string]string{}, map[string]string{}
	for _, service := range migrations.Services() {
		pw, err := localpg.RandomPassword()
		if err != nil {
			return nil, nil, err
		}
		roles.Services[service] = pw
		passwordFiles[service] = filepath.Join(secrets, service+"_db_password")
		if err := os.WriteFile(passwordFiles[service], []byte(pw+"\n"), 0o600); err != nil {
			return nil, nil, fmt.Errorf("password file: %w", err)
		}
	}
	if err := localpg.Provision(ctx, pg.URL("postgres"), migrations.Services(), roles); err != nil {
		return nil, nil, err
	}
	for _, service := range migrations.Services() {
		roleURL := fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", service, pg.Port(), service)
		urls[service] = roleURL
		migrateURL, err := identity.WithPassword(
			fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", localpg.MigrateRole, pg.Port(), service), roles.Migrate)
		if err != nil {
			return nil, nil, err
		}
		if _, err := migrations.Up(ctx, migrateURL, service); err != nil {
			return nil, nil, err
		}
		// Printed with its password: a throwaway cluster on loopback, and
		// the line is what a developer pastes into psql.
		printed, err := identity.WithPassword(roleURL, roles.Services[service])
		if err != nil {
			return nil, nil, err
		}
		s.urls = append(s.urls, namedURL{service + " database", printed})
	}
	return urls, passwordFiles, nil
}

// devPKI is the dev stack's CA and the parties it issued certificates to.
type devPKI struct {
	dir     string
	parties []identity.ID
}

// issueCertificates makes a CA for this run and a certificate for each
// party: NATS, every orders and payments instance, the bank, each
// coordinator node, the console and the admin (the operator's CLI, curl
// against a coordinator, anyone inspecting NATS by hand). They are written
// to <state dir>/pki (.cache/devstack/pki), a path the docs' curl commands
// can name, and removed when the stack stops.
func (s *stack) issueCertificates(cfg config) (*devPKI, error) {
	dir := filepath.Join(s.stateDir, "pki")
	// A stopped stack removes it; one killed without a chance to leaves
	// the last run's, of a CA nothing trusts any more.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("certificates dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certificates dir: %w", err)
	}
	s.onStop(func() error { return os.RemoveAll(dir) })
	now := time.Now()
	ca, err := identity.NewCA("payonce devstack CA", now, 7*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := ca.WriteCA(dir); err != nil {
		return nil, err
	}
	parties := []identity.ID{
		{Service: identity.NATS, Instance: "nats"},
		{Service: identity.Bank, Instance: "bank"},
		identity.AdminCLI,
		{Service: identity.Console, Instance: "console"},
	}
	for i := range cfg.CoordinatorPorts {
		parties = append(parties, identity.ID{Service: identity.Coordinator, Instance: fmt.Sprintf("c%d", i+1)})
	}
	for i := range cfg.PaymentsPorts {
		parties = append(parties, identity.ID{Service: identity.Payments, Instance: fmt.Sprintf("payments-%d", i+1)})
	}
	for i := range cfg.OrdersPorts {
		parties = append(parties, identity.ID{Service: identity.Orders, Instance: fmt.Sprintf("orders-%d", i+1)})
	}
	for _, id := range parties {
		// Everything listens on loopback.
		if _, err := ca.WriteParty(dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, now, 7*24*time.Hour); err != nil {
			return nil, err
		}
	}
	s.pkiDir = dir
	// The stack's own questions to the coordinators, as the operator.
	if s.admin, err = identity.HTTPClient(identity.PartyFiles(dir, identity.AdminCLI), 2*time.Second, identity.Coordinator); err != nil {
		return nil, err
	}
	return &devPKI{dir: dir, parties: parties}, nil
}

// natsSecurity is the NATS server's side: its certificate and a user per
// party that has one.
func (p *devPKI) natsSecurity() *localnats.Security {
	return &localnats.Security{
		Server: identity.PartyFiles(p.dir, identity.ID{Service: identity.NATS, Instance: "nats"}),
		Users:  localnats.UsersFor(p.parties...),
	}
}

// env gives a process identity id.
func (p *devPKI) env(id identity.ID) []string {
	f := identity.PartyFiles(p.dir, id)
	return []string{"TLS_CERT_FILE=" + f.Cert, "TLS_KEY_FILE=" + f.Key, "TLS_CA_FILE=" + f.CA}
}
