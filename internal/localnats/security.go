package localnats

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/identity"
)

// Security turns on mutual TLS and per-identity authorisation: the server
// presents Server's certificate, requires every client to present one the
// same CA signed, and maps the client's identity (its URI SAN) to the user
// of that name. A client with no certificate, a certificate from another
// CA, or an identity with no user is refused, and a user may publish and
// subscribe only as its permissions say.
type Security struct {
	Server identity.Files
	Users  []User
}

// User is one NATS user: an identity and what it may do.
type User struct {
	ID          identity.ID
	Permissions eventbus.Permissions
}

// UsersFor returns the NATS users of ids: each orders, payments or admin
// identity gets its service's eventbus.PermissionsOf; other parties (the
// bank, the coordinator) get none and cannot connect.
func UsersFor(ids ...identity.ID) []User {
	var users []User
	for _, id := range ids {
		if p, ok := eventbus.PermissionsOf(id.Service); ok {
			users = append(users, User{ID: id, Permissions: p})
		}
	}
	return users
}

// Conf is the security part of a nats-server configuration file: the tls
// and authorization blocks. deploy/nats/nats.conf holds the compose
// stack's, and a test checks it says the same.
func (s Security) Conf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tls {\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n", strconv.Quote(s.Server.Cert), strconv.Quote(s.Server.Key), strconv.Quote(s.Server.CA))
	b.WriteString("  # Clients must present a certificate from the CA; its URI SAN is the user.\n")
	b.WriteString("  verify_and_map: true\n  min_version: \"1.3\"\n  timeout: 2\n}\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range s.Users {
		fmt.Fprintf(&b, "    {\n      user: %s\n      permissions: {\n", strconv.Quote(u.ID.String()))
		fmt.Fprintf(&b, "        publish: { allow: %s }\n", quoteList(u.Permissions.Publish))
		fmt.Fprintf(&b, "        subscribe: { allow: %s }\n", quoteList(u.Permissions.Subscribe))
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// routeTLSConf is the tls block of a cluster's routes: nodes route to
// each other only over mutual TLS with certificates of the same CA, so a
// process that reaches a route port cannot join the cluster and read or
// write every stream.
func (s Security) routeTLSConf() string {
	return fmt.Sprintf("  tls {\n    cert_file: %s\n    key_file: %s\n    ca_file: %s\n    verify: true\n    timeout: 2\n  }\n",
		strconv.Quote(s.Server.Cert), strconv.Quote(s.Server.Key), strconv.Quote(s.Server.CA))
}

func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// apply sets the embedded server's options from Conf, parsed by the
// server's own configuration reader, so the embedded server and the child
// process are configured by the same text.
func (s Security) apply(o *server.Options, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("nats security config: %w", err)
	}
	file := filepath.Join(dir, "security.conf")
	text := s.Conf()
	if o.Cluster.Port != 0 {
		text += "cluster {\n  listen: \"127.0.0.1:0\"\n" + s.routeTLSConf() + "}\n"
	}
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		return fmt.Errorf("nats security config: %w", err)
	}
	parsed, err := server.ProcessConfigFile(file)
	if err != nil {
		return fmt.Errorf("nats security config: %w", err)
	}
	o.TLSConfig, o.TLS, o.TLSVerify, o.TLSMap, o.TLSTimeout = parsed.TLSConfig, parsed.TLS, parsed.TLSVerify, parsed.TLSMap, parsed.TLSTimeout
	o.Users = parsed.Users
	if o.Cluster.Port != 0 {
		o.Cluster.TLSConfig, o.Cluster.TLSTimeout = parsed.Cluster.TLSConfig, parsed.Cluster.TLSTimeout
	}
	return nil
}
