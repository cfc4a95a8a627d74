package events

import "github.com/google/uuid"

// PaymentOutcomeEventID is the EventID of the outcome event of a payment,
// derived exactly as payments derives it (services/payments:
// outcomeEventID): the orders inbox key, so an outcome applied by the
// reconciliation sweeper and the same outcome delivered later by NATS
// count once. tests/integration checks both agree.
func PaymentOutcomeEventID(paymentID string) string {
	return uuid.NewSHA1(paymentNamespace, []byte("outcome\x00"+paymentID)).String()
}
