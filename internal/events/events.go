// Package events is the contract between payonce's services: the subjects
// events are published on and the JSON shape of each. It imports no
// messaging library, so a service's domain can name events without knowing
// how they travel.
//
// Every event carries an EventID. It is the outbox row's primary key, the
// JetStream Nats-Msg-Id (so a re-publish inside the duplicate window is
// dropped by the server) and the consumer's inbox key (so a redelivery after
// that window is dropped by the consumer).
package events

import "time"

// Subjects. The first token names the stream that holds the subject.
const (
	// OrderCreated announces an order awaiting payment.
	OrderCreated = "orders.created"
	// OrderRefundRequested asks for an order's payment to be refunded in
	// full: the payment succeeded after the customer had cancelled.
	OrderRefundRequested = "orders.refund_requested"
	// PaymentSucceeded announces a captured payment.
	PaymentSucceeded = "payments.succeeded"
	// PaymentFailed announces a payment that will not succeed (declined or
	// refused); the order moves to payment_failed.
	PaymentFailed = "payments.failed"
)

// OrderCreatedEvent is published by orders when an order is placed.
type OrderCreatedEvent struct {
	EventID string `json:"event_id"`
	OrderID string `json:"order_id"`
	// Caller is the API caller that placed the order. Customers are a
	// per-caller namespace, so (Caller, CustomerID) names the customer.
	Caller     string `json:"caller"`
	CustomerID string `json:"customer_id"`
	// Amount is the order total the orders service computed, in minor units.
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	// Card is the simulated card to charge. A real system sends a PSP token
	// here, never a card number.
	Card       string    `json:"card"`
	OccurredAt time.Time `json:"occurred_at"`
	// Seal proves a payonce service wrote the event (see SealKey).
	Seal string `json:"seal,omitempty"`
}

// PaymentOutcomeEvent is published by payments when a payment for an order
// (or a direct payment) reaches a final state.
type PaymentOutcomeEvent struct {
	EventID   string `json:"event_id"`
	PaymentID string `json:"payment_id"`
	OrderID   string `json:"order_id,omitempty"`
	// Caller owns the payment (and its order, if any).
	Caller     string `json:"caller"`
	CustomerID string `json:"customer_id"`
	Amount     int64  `json:"amount"`
	Currency   string `json:"currency"`
	// Status is "succeeded" or "failed".
	Status        string    `json:"status"`
	FailureReason string    `json:"failure_reason,omitempty"`
	OccurredAt    time.Time `json:"occurred_at"`
	// Seal proves a payonce service wrote the event (see SealKey).
	Seal string `json:"seal,omitempty"`
}

// Subject returns the subject the outcome is published on.
func (e PaymentOutcomeEvent) Subject() string {
	if e.Status == "succeeded" {
		return PaymentSucceeded
	}
	return PaymentFailed
}

// RefundRequestedEvent is published by orders when a payment succeeds for
// an order that was cancelled while the charge was in flight: the money
// was taken for an order that will not be fulfilled, so it goes back.
type RefundRequestedEvent struct {
	EventID   string `json:"event_id"`
	OrderID   string `json:"order_id"`
	PaymentID string `json:"payment_id"`
	// Caller owns the order and its payment.
	Caller     string `json:"caller"`
	CustomerID string `json:"customer_id"`
	// Amount is the captured amount to refund, in minor units.
	Amount     int64     `json:"amount"`
	Currency   string    `json:"currency"`
	Reason     string    `json:"reason"`
	OccurredAt time.Time `json:"occurred_at"`
	// Seal proves a payonce service wrote the event (see SealKey).
	Seal string `json:"seal,omitempty"`
}
