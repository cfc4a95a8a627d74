package platform

import (
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/identity"
)

// connectNATS connects as this instance. With an identity (cfg.TLS) the
// connection is mutual TLS: the instance proves who it is with its
// certificate, which the server maps to its service's user and
// permissions, and it accepts only a server that proves it is NATS. Replies
// come under the service's own inbox prefix, the only one its user may
// subscribe to.
func connectNATS(cfg Config) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Service + " " + cfg.InstanceID),
		nats.MaxReconnects(-1),
		nats.CustomInboxPrefix(eventbus.InboxPrefix(cfg.Service)),
	}
	if cfg.TLS != nil && cfg.NATSTLS {
		tlsCfg, err := identity.ClientConfig(*cfg.TLS, identity.NATS)
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts = append(opts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", cfg.NATSURL, err)
	}
	return nc, nil
}
