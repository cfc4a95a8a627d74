package eventbus

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
)

// Permissions are what one NATS user may publish and subscribe to: the
// server enforces them (internal/localnats, deploy/nats/nats.conf), so a
// service's credentials cannot publish another service's events, whatever
// code runs with them. Each service's instances share its permissions.
type Permissions struct {
	Publish, Subscribe []string
}

// ConsumerGrant names a durable consumer a service runs on another
// service's stream.
type ConsumerGrant struct {
	Stream, Durable string
}

// grant is the bus as one service sees it.
type grant struct {
	// owns is the stream of the service's own events (it may update it).
	owns string
	// publishes are the event subjects it may publish.
	publishes string
	// consumes are its durable consumers.
	consumes []ConsumerGrant
}

// grants is every service's place on the bus. The durable names are the
// services' own (services/orders/nats.DurableName, ...); the flow tests in
// tests/integration run the services under these permissions, so a renamed
// consumer that is not renamed here fails them.
var grants = map[string]grant{
	"orders": {
		owns:      "ORDERS",
		publishes: "orders.>",
		consumes:  []ConsumerGrant{{"PAYMENTS", "orders-payment-outcomes"}},
	},
	"payments": {
		owns:      "PAYMENTS",
		publishes: "payments.>",
		consumes:  []ConsumerGrant{{"ORDERS", "payments-orders-created"}, {"ORDERS", "payments-orders-refunds"}},
	},
}

// InboxPrefix is the reply-subject prefix a service's connections use
// (nats.CustomInboxPrefix). Each service may subscribe only under its own,
// so one service cannot read the replies (JetStream acks, consumer
// deliveries) meant for another.
func InboxPrefix(service string) string { return "_INBOX_" + service }

// PermissionsOf returns service's NATS permissions; ok is false for a
// service that has no business on the bus (the bank, the coordinator).
// "admin" (an operator, and tests inspecting streams) may do everything.
//
// A service may publish its own events; ask for information on, and create
// with the definitions in Streams, every payonce stream (whichever service
// starts first creates them, as before); update only its own stream and
// the dead-letter stream; and create, read from and acknowledge only its
// own durable consumers, and dead-letter what those consumers give up on.
// Deleting or purging a stream or a consumer is for
// the admin alone.
func PermissionsOf(service string) (p Permissions, ok bool) {
	if service == "admin" {
		return Permissions{Publish: []string{">"}, Subscribe: []string{">"}}, true
	}
	g, ok := grants[service]
	if !ok {
		return Permissions{}, false
	}
	p.Publish = []string{g.publishes, "$JS.API.INFO"}
	for _, s := range Streams() {
		p.Publish = append(p.Publish, "$JS.API.STREAM.INFO."+s.Name, "$JS.API.STREAM.CREATE."+s.Name)
	}
	p.Publish = append(p.Publish, "$JS.API.STREAM.UPDATE."+g.owns, "$JS.API.STREAM.UPDATE."+DeadLetterStream)
	for _, c := range g.consumes {
		sd := c.Stream + "." + c.Durable
		p.Publish = append(p.Publish,
			"$JS.API.CONSUMER.CREATE."+sd,
			"$JS.API.CONSUMER.CREATE."+sd+".>", // the form with one filter subject
			"$JS.API.CONSUMER.DURABLE.CREATE."+sd,
			"$JS.API.CONSUMER.INFO."+sd,
			"$JS.API.CONSUMER.MSG.NEXT."+sd,
			"$JS.ACK."+sd+".>",
			// A message it gives up on goes to the dead-letter stream
			// under its consumer's name (Consumer.deadLetter).
			DeadLetterSubjectPrefix+c.Durable+".>",
		)
	}
	p.Subscribe = []string{InboxPrefix(service) + ".>"}
	return p, true
}

// EnsureStreamsAs is EnsureStreams for a service running under
// PermissionsOf: it creates every stream that is missing, and updates its
// own stream (owned by service) and the dead-letter stream, leaving the
// other services' streams as their owners defined them. It works without
// permissions too.
func EnsureStreamsAs(ctx context.Context, js jetstream.JetStream, service string) error {
	g, ok := grants[service]
	if !ok {
		return EnsureStreams(ctx, js)
	}
	// The same replica choice as EnsureStreams: follow the deployment.
	replicas := 1
	if nc := js.Conn(); nc != nil && nc.ConnectedClusterName() != "" {
		replicas = ClusterReplicas
	}
	for _, cfg := range StreamsFor(replicas) {
		_, err := js.CreateStream(ctx, cfg)
		switch {
		case err == nil:
		case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
			if !slices.Contains([]string{g.owns, DeadLetterStream}, cfg.Name) {
				continue // another service's: its owner keeps it current
			}
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
			}
		default:
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}
