package payments

import (
	"context"
	"errors"

	"github.com/payonce/payonce/internal/errs"
)

// ErrNoPaymentForOrder is what OrderPayments.Of returns when payments has
// never recorded a payment for the order: it never handled its
// orders.created. The orders reconciliation sweeper then publishes that
// event again.
var ErrNoPaymentForOrder = errs.E(errs.NotFound, "payments has no payment for this order").WithType("no-payment-for-order")

// OrderPayments is the one read of payments that is not scoped to a
// caller: the payment of an order, whoever placed it, for the orders
// service's reconciliation sweeper (services/orders/reconcile.go). Its
// route admits only the orders service's own API key.
type OrderPayments struct {
	Store Store
}

// Of returns the payment of orderID, found by the id payments derives from
// the order (PaymentIDForOrder), or ErrNoPaymentForOrder.
func (o OrderPayments) Of(ctx context.Context, orderID string) (Payment, error) {
	p, err := o.Store.Payment(ctx, PaymentIDForOrder(orderID))
	if errors.Is(err, ErrPaymentNotFound) || errs.KindOf(err) == errs.NotFound {
		return Payment{}, ErrNoPaymentForOrder
	}
	if err != nil {
		return Payment{}, err
	}
	if p.OrderID != orderID {
		// Only an id collision could do this; never answer for another order.
		return Payment{}, errs.Errorf(errs.Conflict, "payment %s belongs to order %q, not %q", p.ID, p.OrderID, orderID)
	}
	return p, nil
}
