package orders

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/internal/events"
)

// Status is where an order stands.
type Status string

// Order statuses. All but PendingPayment are final.
const (
	PendingPayment Status = "pending_payment"
	Paid           Status = "paid"
	PaymentFailed  Status = "payment_failed"
	Cancelled      Status = "cancelled"
)

// CanMoveTo reports whether the state machine allows s -> next. Only a
// pending order moves, and only to a final state.
func (s Status) CanMoveTo(next Status) bool {
	return s == PendingPayment && (next == Paid || next == PaymentFailed || next == Cancelled)
}

// Line is one product in an order. UnitPrice comes from the catalog.
type Line struct {
	SKU       string `json:"sku"`
	Name      string `json:"name"`
	Quantity  int64  `json:"quantity"`
	UnitPrice int64  `json:"unit_price"`
	Amount    int64  `json:"amount"`
}

// Order is a customer's order.
type Order struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Lines      []Line `json:"lines"`
	// Total is the sum of the lines, in minor units of Currency.
	Total         int64     `json:"total"`
	Currency      string    `json:"currency"`
	Status        Status    `json:"status"`
	PaymentID     string    `json:"payment_id,omitempty"`
	FailureReason string    `json:"failure_reason,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`

	Caller string `json:"-"`
	// Card is the SIMULATED card the payment will charge; see payments.
	Card string `json:"-"`
}

// LineRequest asks for a quantity of a product.
type LineRequest struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

// CreateOrderRequest asks to place an order. It names products and
// quantities only: prices and the total are the service's to compute.
type CreateOrderRequest struct {
	// ID is derived from the intent (see OrderIDFor).
	ID         string        `json:"-"`
	CustomerID string        `json:"customer_id"`
	Currency   string        `json:"currency"`
	Lines      []LineRequest `json:"lines"`
	Card       string        `json:"card"`
}

// Page selects a slice of a list.
type Page struct {
	Limit  int
	Cursor string
}

// OrderList is one page of orders, newest first.
type OrderList struct {
	Orders []Order `json:"orders"`
	Next   string  `json:"next_cursor,omitempty"`
}

// Service is what the orders service does.
type Service interface {
	CreateOrder(ctx context.Context, caller string, req CreateOrderRequest) (Order, error)
	// Order returns the caller's order id; another caller's order is
	// ErrOrderNotFound, exactly like one that does not exist.
	Order(ctx context.Context, caller, id string) (Order, error)
	// CustomerOrders lists the orders of the caller's customer customerID:
	// customers are a per-caller namespace.
	CustomerOrders(ctx context.Context, caller, customerID string, page Page) (OrderList, error)
	// CancelOrder cancels the caller's pending order; any other state is a
	// conflict, another caller's order is not found.
	CancelOrder(ctx context.Context, caller, id string) (Order, error)
	// ApplyPaymentOutcome moves the order a payment outcome is about,
	// once per event however often it is delivered.
	ApplyPaymentOutcome(ctx context.Context, ev events.PaymentOutcomeEvent) error
}

// Store keeps orders. Each method is one transaction.
type Store interface {
	// CreateOrder inserts o and its orders.created event unless an order
	// with o.ID exists; it returns the stored order.
	CreateOrder(ctx context.Context, o Order, ev events.OrderCreatedEvent) (Order, error)
	// Order returns order id if caller owns it. Every read the API makes
	// is scoped in SQL, so no code path can forget the check.
	Order(ctx context.Context, caller, id string) (Order, error)
	// OrderByID returns order id whoever owns it, for checking an event
	// against the order it names; never for answering a caller.
	OrderByID(ctx context.Context, id string) (Order, error)
	CustomerOrders(ctx context.Context, caller, customerID string, page Page) (OrderList, error)
	// Transition moves caller's order id from `from` to `to` if it is in
	// `from`, and returns the order as it now stands and whether it moved.
	Transition(ctx context.Context, caller, id string, from, to Status, paymentID, reason string) (Order, bool, error)
	// ApplyOutcome records the event in the inbox and, if it is new and
	// the order is pending, moves the order (applied); all in one
	// transaction. A new success for an order cancelled meanwhile writes an
	// orders.refund_requested event in that transaction instead
	// (refundRequested).
	ApplyOutcome(ctx context.Context, ev events.PaymentOutcomeEvent, to Status) (applied, refundRequested bool, err error)
}

// CustomerKey names the customer customerID of caller wherever one name
// is needed (the ring): customers are a per-caller namespace. Callers
// never contain ":" (internal/apikey), so the name is unambiguous.
func CustomerKey(caller, customerID string) string { return customer.Key(caller, customerID) }

var idNamespace = uuid.MustParse("8d1a3c55-2f4b-4f0e-9b7e-0c6d3e2a9f11")

// OrderIDFor names the order of an API intent (caller scope and
// Idempotency-Key); retries compute the same id.
func OrderIDFor(scope, idempotencyKey string) string {
	return uuid.NewSHA1(idNamespace, []byte("order\x00"+scope+"\x00"+idempotencyKey)).String()
}

func createdEventID(orderID string) string {
	return uuid.NewSHA1(idNamespace, []byte("orders.created\x00"+orderID)).String()
}
