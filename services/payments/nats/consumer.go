// Package nats connects the payments service to JetStream: it consumes
// orders.created and charges each order once, on the instance that owns
// the order's customer, and orders.refund_requested, refunding an order
// cancelled while it was charged.
package nats

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/services/payments"
)

// DurableName is the payments service's durable consumer of orders.created;
// every instance shares it, so each event goes to one instance at a time.
const DurableName = "payments-orders-created"

// Owner routes an order to the instance owning its customer.
type Owner interface {
	// Owns reports whether this instance owns caller's customer.
	Owns(caller, customerID string) bool
	// PayAtOwner asks the owner to pay the order and returns its error;
	// forwarded is false when the owner could not be reached, and the
	// order should then be paid here.
	PayAtOwner(ctx context.Context, ev events.OrderCreatedEvent) (forwarded bool, err error)
}

// OrderConsumer charges the orders that orders.created announces.
type OrderConsumer struct {
	Service payments.Service
	// Owner, when set, makes the consumer charge only customers this
	// instance owns and hand the others to their owner.
	Owner Owner
	// Refusals records events that failed verification.
	Refusals events.Refusals
}

// Handle charges one event's order. Redelivery is safe: the payment id is
// derived from the order id and the bank call's key from the payment, so a
// second delivery finds the payment and at most finishes it. A malformed or
// invalid event is terminated (retrying cannot fix it); an outage is
// returned so the message is redelivered later.
func (c OrderConsumer) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev events.OrderCreatedEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return refuse(ctx, c.Refusals, msg, fmt.Errorf("decode %s: %w", msg.Subject(), err))
	}
	if c.Owner != nil && !c.Owner.Owns(ev.Caller, ev.CustomerID) {
		forwarded, err := c.Owner.PayAtOwner(ctx, ev)
		trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("partition.forwarded", forwarded))
		if forwarded {
			return classify(ctx, c.Refusals, msg, err)
		}
	}
	_, err := c.Service.PayOrder(ctx, ev)
	return classify(ctx, c.Refusals, msg, err)
}

// RefundDurableName is the payments service's durable consumer of
// orders.refund_requested, shared by every instance like DurableName.
const RefundDurableName = "payments-orders-refunds"

// RefundOwner routes a refund to the instance owning its customer.
type RefundOwner interface {
	// Owns reports whether this instance owns caller's customer.
	Owns(caller, customerID string) bool
	// RefundAtOwner asks the owner to refund the order; forwarded is false
	// when the owner could not be reached, and the refund should then be
	// tried here.
	RefundAtOwner(ctx context.Context, ev events.RefundRequestedEvent) (forwarded bool, err error)
}

// RefundConsumer refunds the orders that orders.refund_requested names.
// The refund is made under the customer's lease and fences its writes like
// a charge, so overlapping instances cannot both refund.
type RefundConsumer struct {
	Service payments.Service
	// Owner, when set, hands a refund for a customer this instance does
	// not own to its owner. Under partition leases only the owner can
	// write it, and a redelivered event may keep coming back here.
	Owner RefundOwner
	// Refusals records events that failed verification.
	Refusals events.Refusals
}

// Handle refunds one event's order. Redelivery is safe: the refund id is
// derived from the order, so a second delivery finds the refund and at
// most finishes it.
func (c RefundConsumer) Handle(ctx context.Context, msg jetstream.Msg) error {
	var ev events.RefundRequestedEvent
	if err := json.Unmarshal(msg.Data(), &ev); err != nil {
		return refuse(ctx, c.Refusals, msg, fmt.Errorf("decode %s: %w", msg.Subject(), err))
	}
	if c.Owner != nil && !c.Owner.Owns(ev.Caller, ev.CustomerID) {
		forwarded, err := c.Owner.RefundAtOwner(ctx, ev)
		trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("partition.forwarded", forwarded))
		if forwarded {
			return classify(ctx, c.Refusals, msg, err)
		}
	}
	_, err := c.Service.RefundOrder(ctx, ev)
	return classify(ctx, c.Refusals, msg, err)
}

// classify terminates an invalid or unverifiable event (retrying cannot
// fix it) and returns an outage as is, for redelivery.
func classify(ctx context.Context, r events.Refusals, msg jetstream.Msg, err error) error {
	if err != nil && errs.KindOf(err) == errs.Invalid {
		return refuse(ctx, r, msg, err)
	}
	return err
}

// refuse records a refused event and terminates it to the dead-letter
// stream; it is never applied.
func refuse(ctx context.Context, r events.Refusals, msg jetstream.Msg, err error) error {
	r.Record(ctx, msg.Subject(), err)
	return eventbus.Permanent(err)
}
