// Package nats connects the orders service to JetStream: it consumes
// payment outcomes and moves orders, once per event.
package nats

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/services/orders"
)

// DurableName is the orders service's durable consumer of payment outcomes.
const DurableName = "orders-payment-outcomes"

// Subjects are the subjects the consumer reads.
var Subjects = []string{events.PaymentSucceeded, events.PaymentFailed}

// OutcomeConsumer applies payment outcomes to orders.
type OutcomeConsumer struct {
	Service orders.Service
	// Refusals records outcomes that failed verification.
	Refusals events.Refusals
}

// Handle applies one outcome. A malformed or unverifiable event is
// terminated (to the dead-letter stream) and never applied; an outage is
// returned so the message is redelivered.
func (c OutcomeConsumer) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev events.PaymentOutcomeEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		err = fmt.Errorf("decode %s: %w", msg.Subject(), err)
		c.Refusals.Record(ctx, msg.Subject(), err)
		return eventbus.Permanent(err)
	}
	if ev.EventID == "" {
		ev.EventID = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	if ev.OrderID == "" {
		return nil // a direct API payment: no order to move
	}
	if ev.Subject() != msg.Subject() {
		// A success published as a failure (or the reverse) is not what
		// payments writes.
		err := fmt.Errorf("outcome %s with status %q published on %s", ev.EventID, ev.Status, msg.Subject())
		c.Refusals.Record(ctx, msg.Subject(), err)
		return eventbus.Permanent(err)
	}
	err := c.Service.ApplyPaymentOutcome(ctx, ev)
	if err != nil && errs.KindOf(err) == errs.Invalid {
		c.Refusals.Record(ctx, msg.Subject(), err)
		return eventbus.Permanent(err)
	}
	return err
}
