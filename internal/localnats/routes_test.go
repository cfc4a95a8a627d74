package localnats

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

// TestSecuredClusterRefusesRogueRoutes: with Security, the nodes of a
// cluster route to each other over mutual TLS (the cluster forms, so
// JetStream has a leader), and a process that reaches a route port cannot
// join: the port demands TLS, a plain route is cut off, and a certificate
// from another CA fails the handshake.
func TestSecuredClusterRefusesRogueRoutes(t *testing.T) {
	for _, mode := range []struct{ name, binary string }{
		{"child processes", os.Getenv(BinaryEnv)},
		{"embedded", ""},
	} {
		if mode.name == "child processes" && mode.binary == "" {
			continue // make test provides the binary; the embedded run below covers the rest
		}
		t.Run(mode.name, func(t *testing.T) {
			t.Setenv(BinaryEnv, mode.binary)
			dir := t.TempDir()
			sec := testSecurity(t, dir)
			c, err := StartCluster(ClusterOptions{Dir: t.TempDir(), Node: Options{Binary: mode.binary, Security: &sec}})
			if err != nil {
				t.Fatalf("a secured cluster does not form: %v", err)
			}
			defer c.Shutdown()
			routeAddr := fmt.Sprintf("127.0.0.1:%d", c.Nodes[0].opts.Cluster.Port)

			// A plain route: the port either says TLS is required or
			// closes at once; it never offers a plain route.
			conn, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			if info, _ := bufio.NewReader(conn).ReadString('\n'); info != "" && !strings.Contains(info, `"tls_required":true`) {
				t.Fatalf("the route port offers a plain route: %q", info)
			}

			// A route with a certificate from another CA.
			foreign := testSecurity(t, t.TempDir())
			pair, err := tls.LoadX509KeyPair(foreign.Server.Cert, foreign.Server.Key)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			// The server may first send its INFO in clear; skip it.
			_ = raw.SetReadDeadline(time.Now().Add(time.Second))
			br := bufio.NewReader(raw)
			_, _ = br.ReadString('\n')
			_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
			tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true})
			if err := tc.Handshake(); err == nil {
				_, _ = tc.Write([]byte("CONNECT {\"name\":\"rogue\"}\r\nPING\r\n"))
				if got := readUntilClosed(tc); strings.Contains(got, "PONG") {
					t.Fatalf("a route with a foreign CA's certificate was answered: %q", got)
				}
			}
		})
	}
}

// readUntilClosed returns what conn sends until it closes or its
// deadline passes.
func readUntilClosed(conn net.Conn) string {
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func testSecurity(t *testing.T, dir string) Security {
	t.Helper()
	ca, err := identity.NewCA("test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	id := identity.ID{Service: identity.NATS, Instance: "nats"}
	files, err := ca.WriteParty(dir, identity.Party{ID: id, Hosts: []string{"127.0.0.1", "localhost"}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return Security{Server: files, Users: UsersFor(identity.AdminCLI)}
}
