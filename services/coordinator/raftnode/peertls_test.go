package raftnode

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/identity"
)

// TestPeersAreDialledByAddressAndCheckedByIdentity: hashicorp/raft dials a
// peer at its advertised IP, which the compose stack's certificates (made
// before any container had an address) do not name; the first compose run
// with Raft over TLS elected no leader ("certificate is valid for
// 127.0.0.1, not 172.18.0.9"). A peer whose certificate names only its
// host name is accepted when dialled by address; one from another CA, or
// of the right CA but another party, is still refused at the handshake.
func TestPeersAreDialledByAddressAndCheckedByIdentity(t *testing.T) {
	now := time.Now()
	ca, err := identity.NewCA("payonce test CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := identity.NewCA("another CA", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	party := func(ca *identity.CA, service, instance string) identity.Files {
		dir := t.TempDir()
		if err := ca.WriteCA(dir); err != nil {
			t.Fatal(err)
		}
		f, err := ca.WriteParty(dir, identity.Party{
			ID:    identity.ID{Service: service, Instance: instance},
			Hosts: []string{instance}, // a host name only: no address
		}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	dialler := party(ca, identity.Coordinator, "coordinator-1")
	client, err := identity.ClientConfig(dialler, identity.Coordinator)
	if err != nil {
		t.Fatal(err)
	}
	peerClient := peerClientConfig(client)

	for _, tc := range []struct {
		name   string
		server identity.Files
		ok     bool
	}{
		{"a coordinator of the CA, its certificate naming no address", party(ca, identity.Coordinator, "coordinator-3"), true},
		{"a coordinator certificate from another CA", party(foreignCA, identity.Coordinator, "coordinator-3"), false},
		{"the CA's certificate of a service instance", party(ca, identity.Payments, "payments-1"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, err := identity.ServerConfig(tc.server, identity.AllowServices(identity.Coordinator))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", server)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					_ = c.(*tls.Conn).Handshake() // the client's verdict is what is asserted
					c.Close()
				}
			}()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), peerClient)
			if conn != nil {
				conn.Close()
			}
			if tc.ok && err != nil {
				t.Fatalf("dialled by address: %v", err)
			}
			if !tc.ok && err == nil {
				t.Fatal("the handshake succeeded; want it refused")
			}
			// The plain client config (host-name verification) refuses even
			// the honest peer by address: what the compose stack hit.
			if tc.ok {
				plain, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), client)
				if err == nil {
					plain.Close()
					t.Fatal("the host-name check accepted a certificate naming no address; the test proves nothing")
				}
			}
		})
	}
}
