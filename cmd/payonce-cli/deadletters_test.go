package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/internal/localnats"
)

// TestDeadLettersOverMutualTLS: against a NATS that admits only
// certificates of its CA (as make dev and compose run it), the CLI lists
// dead letters as the operator with -certs, and without it is refused.
func TestDeadLettersOverMutualTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	ca, err := identity.NewCA("test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	server, err := ca.WriteParty(dir, identity.Party{ID: identity.ID{Service: identity.NATS, Instance: "nats"}, Hosts: []string{"127.0.0.1"}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.WriteParty(dir, identity.Party{ID: identity.AdminCLI}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := localnats.Start(localnats.Options{StoreDir: t.TempDir(),
		Security: &localnats.Security{Server: server, Users: localnats.UsersFor(identity.AdminCLI)}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	tlsCfg, err := identity.ClientConfig(admin, identity.NATS)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.URL(), nats.Secure(tlsCfg))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := eventbus.EnsureStreams(ctx, js); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := run(ctx, []string{"payonce-cli", "-nats", srv.URL(), "-certs", dir, "deadletters", "list"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("deadletters list with -certs: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "0 dead letter(s)") {
		t.Fatalf("deadletters list:\n%s", out.String())
	}
	if err := run(ctx, []string{"payonce-cli", "-nats", srv.URL(), "deadletters", "list"}, func(string) string { return "" }, &bytes.Buffer{}); err == nil {
		t.Fatal("the CLI without a certificate was let in")
	}
}
