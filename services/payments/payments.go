package payments

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/internal/events"
)

// Status is where a payment stands.
type Status string

// Payment statuses. Succeeded and Failed are final.
const (
	// Pending: the intent is recorded; the bank has not been called. New
	// intents are recorded authorizing (the lease is taken first); a
	// pending row is one recorded before that, and settle takes it on.
	Pending Status = "pending"
	// Authorizing: the bank may have been called. Only the bank, asked
	// again with the same BankKey, can say whether it charged.
	Authorizing Status = "authorizing"
	// Succeeded: the bank captured the amount.
	Succeeded Status = "succeeded"
	// Failed: the bank declined; nothing was charged.
	Failed Status = "failed"
)

// Final reports whether s can no longer change.
func (s Status) Final() bool { return s == Succeeded || s == Failed }

// Payment is one intent to charge a customer, and what came of it.
type Payment struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	OrderID    string `json:"order_id,omitempty"`
	Amount     int64  `json:"amount"`
	Currency   string `json:"currency"`
	CardLast4  string `json:"card_last4"`
	Status     Status `json:"status"`
	// BankChargeID is the bank's id of the charge once it succeeded.
	BankChargeID   string    `json:"bank_charge_id,omitempty"`
	FailureReason  string    `json:"failure_reason,omitempty"`
	RefundedAmount int64     `json:"refunded_amount"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`

	// Caller is who asked for the payment (an API caller, or "orders").
	Caller string `json:"-"`
	// Card is the SIMULATED card number the bank is charged with; see the
	// payments table. Never serialised.
	Card string `json:"-"`
	// BankKey is the idempotency key of the bank call.
	BankKey string `json:"-"`
	// SourceEventID is the id of the event that asked for the payment
	// (orders.created), recorded in the inbox with the payment.
	SourceEventID string `json:"-"`
}

// RefundStatus is where a refund stands.
type RefundStatus string

// Refund statuses. Succeeded and Failed are final.
const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
)

// Refund returns part or all of a succeeded payment.
type Refund struct {
	ID            string       `json:"id"`
	PaymentID     string       `json:"payment_id"`
	Amount        int64        `json:"amount"`
	Currency      string       `json:"currency"`
	Status        RefundStatus `json:"status"`
	BankRefundID  string       `json:"bank_refund_id,omitempty"`
	FailureReason string       `json:"failure_reason,omitempty"`
	CreatedAt     time.Time    `json:"created_at"`
	UpdatedAt     time.Time    `json:"updated_at"`
	BankKey       string       `json:"-"`
}

// CreatePaymentRequest asks to charge a customer.
type CreatePaymentRequest struct {
	// ID is derived from the intent by the caller of the service (see
	// PaymentIDFor); the same intent always names the same payment.
	ID         string `json:"-"`
	CustomerID string `json:"customer_id"`
	Amount     int64  `json:"amount"`
	Currency   string `json:"currency"`
	Card       string `json:"card"`
}

// RefundRequest asks to refund amount of a payment.
type RefundRequest struct {
	// ID is derived from the intent, like CreatePaymentRequest.ID.
	ID        string `json:"-"`
	PaymentID string `json:"-"`
	Amount    int64  `json:"amount"`
}

// Page selects a slice of a list: at most Limit items after Cursor.
type Page struct {
	Limit  int
	Cursor string
}

// PaymentList is one page of payments, newest first; Next is the cursor of
// the following page, empty on the last.
type PaymentList struct {
	Payments []Payment `json:"payments"`
	Next     string    `json:"next_cursor,omitempty"`
}

// Service is what the payments service does.
type Service interface {
	// CreatePayment charges a customer once for the intent req.ID names.
	CreatePayment(ctx context.Context, caller string, req CreatePaymentRequest) (Payment, error)
	// PayOrder charges the order an orders.created event announces, once
	// however often the event is delivered.
	PayOrder(ctx context.Context, ev events.OrderCreatedEvent) (Payment, error)
	// Payment returns the caller's payment id; another caller's payment
	// is ErrPaymentNotFound, exactly like one that does not exist.
	Payment(ctx context.Context, caller, id string) (Payment, error)
	// CustomerPayments lists the payments of the caller's customer
	// customerID, newest first: customers are a per-caller namespace.
	CustomerPayments(ctx context.Context, caller, customerID string, page Page) (PaymentList, error)
	// RefundPayment refunds part of the caller's succeeded payment, once
	// per intent, never more in total than was captured.
	RefundPayment(ctx context.Context, caller string, req RefundRequest) (Refund, error)
	// RefundOrder refunds in full the payment of an order that was
	// cancelled while it was being charged, once however often the
	// orders.refund_requested event is delivered.
	RefundOrder(ctx context.Context, ev events.RefundRequestedEvent) (Refund, error)
	// ResumeUnfinished finishes payments and refunds whose last change is
	// older than olderThan and that are not final: work whose process died.
	ResumeUnfinished(ctx context.Context, olderThan time.Duration, limit int) (int, error)
}

// CustomerKey names the customer customerID of caller wherever one name
// is needed (the ring, the customer's lock and fence): customers are a
// per-caller namespace, so `alice` of two callers are two customers with
// two locks. Callers never contain ":" (internal/apikey), so the name is
// unambiguous.
func CustomerKey(caller, customerID string) string { return customer.Key(caller, customerID) }

// idNamespace roots the name-based (v5) UUIDs that tie ids to intents.
var idNamespace = uuid.MustParse("3f1c6a52-8a0e-4f55-9d0c-6b1f0d8a7e21")

// PaymentIDFor names the payment of an API intent: the caller's scope and
// Idempotency-Key. Retries of the intent compute the same id.
func PaymentIDFor(scope, idempotencyKey string) string {
	return uuid.NewSHA1(idNamespace, []byte("payment\x00"+scope+"\x00"+idempotencyKey)).String()
}

// RefundIDForOrder names the refund of an order cancelled while its
// payment was in flight: one per order.
func RefundIDForOrder(orderID string) string {
	return uuid.NewSHA1(idNamespace, []byte("order-refund\x00"+orderID)).String()
}

// PaymentIDForOrder names the payment of an order: one per order.
// It is events.PaymentIDForOrder: orders derives it too, to check outcomes.
func PaymentIDForOrder(orderID string) string { return events.PaymentIDForOrder(orderID) }

// RefundIDFor names the refund of an API intent.
func RefundIDFor(scope, idempotencyKey string) string {
	return uuid.NewSHA1(idNamespace, []byte("refund\x00"+scope+"\x00"+idempotencyKey)).String()
}

// outcomeEventID names the one outcome event of a payment.
func outcomeEventID(paymentID string) string {
	return uuid.NewSHA1(idNamespace, []byte("outcome\x00"+paymentID)).String()
}

// bankKey is the idempotency key of the bank call for an id (payment or refund).
func bankKey(kind, id string) string { return "payonce-" + kind + "-" + id }
