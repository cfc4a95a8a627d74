package main

import (
	"crypto/tls"
	"net/http"
	"time"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// security is a node's TLS, built from its identity files (config.TLS):
// the API's server side, the Raft transport's both sides, and the clients
// that talk to the other nodes' APIs. Without files the TLS parts are nil
// and the clients plain.
type security struct {
	api  *tls.Config
	raft *raftnode.TLS
	// askPeer asks another node about itself (bootstrap check, admitter);
	// forward carries requests forwarded to the leader (no timeout: a
	// members long poll or a queued acquire may take long, and the
	// caller's own deadline ends it).
	askPeer, forward *http.Client
}

func newSecurity(cfg config) (security, error) {
	if cfg.TLS == nil {
		return security{
			askPeer: &http.Client{Timeout: 2 * time.Second},
			forward: &http.Client{Transport: http.DefaultTransport},
		}, nil
	}
	f := *cfg.TLS
	var s security
	var err error
	if s.api, err = identity.APIServerConfig(f); err != nil {
		return s, err
	}
	// Raft admits coordinator nodes only: a service instance's certificate
	// is from the same CA but has no business in the log.
	raftServer, err := identity.ServerConfig(f, identity.AllowServices(identity.Coordinator))
	if err != nil {
		return s, err
	}
	raftClient, err := identity.ClientConfig(f, identity.Coordinator)
	if err != nil {
		return s, err
	}
	s.raft = &raftnode.TLS{Server: raftServer, Client: raftClient}
	if s.askPeer, err = identity.HTTPClient(f, 2*time.Second, identity.Coordinator); err != nil {
		return s, err
	}
	if s.forward, err = identity.HTTPClient(f, 0, identity.Coordinator); err != nil {
		return s, err
	}
	return s, nil
}
