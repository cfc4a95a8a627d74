package events

import "github.com/google/uuid"

// paymentsNamespace is the payments service's id namespace
// (services/payments: idNamespace). The ids below are derived exactly as
// payments derives them, so another service can name the payment of an
// order without asking for its id; tests/integration checks both agree.
var paymentsNamespace = uuid.MustParse("3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21")

// PaymentIDForOrder is the id of the one payment of an order.
func PaymentIDForOrder(orderID string) string {
	return uuid.NewSHA1(paymentsNamespace, []byte("order\x00"+orderID)).String()
}

// PaymentOutcomeEventID is the EventID of the outcome event of a payment:
// the orders inbox key, so an outcome applied by reconciliation and the
// same outcome delivered later by NATS count once.
func PaymentOutcomeEventID(paymentID string) string {
	return uuid.NewSHA1(paymentsNamespace, []byte("outcome\x00"+paymentID)).String()
}
