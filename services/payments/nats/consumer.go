// Package nats connects the payments service to JetStream: it consumes
// orders.created and charges each order once.
package nats

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/services/payments"
)

// DurableName is the payments service's durable consumer of orders.created;
// every instance shares it, so each event goes to one instance at a time.
const DurableName = "payments-orders-created"

// OrderConsumer charges the orders that orders.created announces.
type OrderConsumer struct {
	Service payments.Service
}

// Handle charges one event's order. Redelivery is safe: the payment id is
// derived from the order id and the bank call's key from the payment, so a
// second delivery finds the payment and at most finishes it. A malformed or
// invalid event is terminated (retrying cannot fix it); an outage is
// returned so the message is redelivered later.
func (c OrderConsumer) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev events.OrderCreatedEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return eventbus.Permanent(fmt.Errorf("decode %s: %w", msg.Subject(), err))
	}
	if ev.EventID == "" {
		ev.EventID = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	_, err := c.Service.PayOrder(ctx, ev)
	if err != nil && errs.KindOf(err) == errs.Invalid {
		return eventbus.Permanent(err)
	}
	return err
}
