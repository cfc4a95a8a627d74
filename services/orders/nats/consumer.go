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
}

// Handle applies one outcome. A malformed event is terminated; an outage is
// returned so the message is redelivered.
func (c OutcomeConsumer) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev events.PaymentOutcomeEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return eventbus.Permanent(fmt.Errorf("decode %s: %w", msg.Subject(), err))
	}
	if ev.EventID == "" {
		ev.EventID = msg.Headers().Get(jetstream.MsgIDHeader)
	}
	if ev.OrderID == "" {
		return nil // a direct API payment: no order to move
	}
	err := c.Service.ApplyPaymentOutcome(ctx, ev)
	if err != nil && errs.KindOf(err) == errs.Invalid {
		return eventbus.Permanent(err)
	}
	return err
}
