package orders

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/money"
)

// Limits on an order, so one request cannot ask for unbounded work.
const (
	MaxLines    = 50
	MaxQuantity = 1000
)

type service struct {
	store   Store
	catalog Catalog
	seal    events.SealKey
	tracer  trace.Tracer
	logger  *slog.Logger
	now     func() time.Time
}

// NewService returns the orders service on its store and catalog. seal
// seals the events it writes and checks the ones it consumes.
func NewService(store Store, catalog Catalog, seal events.SealKey, tracer trace.Tracer, logger *slog.Logger) Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &service{store: store, catalog: catalog, seal: seal, tracer: tracer, logger: logger, now: time.Now}
}

// unverifiable is the error of an event that fails its checks: an Invalid
// error of type "unverifiable-event". Retrying cannot make it pass, so the
// consumer terminates it to the dead-letter stream and never applies it.
func unverifiable(why string, args ...any) error {
	return errs.Wrap(errs.Invalid, "event failed verification", fmt.Errorf(why, args...)).WithType("unverifiable-event")
}

func (s *service) CreateOrder(ctx context.Context, caller string, req CreateOrderRequest) (Order, error) {
	o, err := s.price(req)
	if err != nil {
		return Order{}, err
	}
	o.Caller = caller
	ev := events.OrderCreatedEvent{
		EventID:    createdEventID(o.ID),
		OrderID:    o.ID,
		Caller:     caller,
		CustomerID: o.CustomerID,
		Amount:     o.Total,
		Currency:   o.Currency,
		Card:       o.Card,
		OccurredAt: s.now().UTC(),
	}
	ev = s.seal.SealOrderCreated(ev)
	stored, err := s.store.CreateOrder(ctx, o, ev)
	if err != nil {
		return Order{}, err
	}
	if stored.Total != o.Total || stored.CustomerID != o.CustomerID || stored.Currency != o.Currency {
		return Order{}, errs.E(errs.Conflict, "a different order already exists for this intent")
	}
	return stored, nil
}

// price validates req and computes every line and the total from the
// catalog. The sum is checked against money.MaxAmount at each step, so no
// order can overflow int64 however its quantities are chosen.
func (s *service) price(req CreateOrderRequest) (Order, error) {
	var fields []errs.FieldError
	if f := customer.CheckID("customer_id", req.CustomerID); f != nil {
		fields = append(fields, *f)
	}
	if err := money.Currency(req.Currency).Validate(); err != nil {
		fields = append(fields, errs.FieldError{Field: "currency", Reason: "unknown ISO 4217 currency code"})
	}
	if len(req.Card) < 12 || len(req.Card) > 19 || !digits(req.Card) {
		fields = append(fields, errs.FieldError{Field: "card", Reason: "12 to 19 digits"})
	}
	if len(req.Lines) == 0 || len(req.Lines) > MaxLines {
		fields = append(fields, errs.FieldError{Field: "lines", Reason: fmt.Sprintf("1 to %d lines", MaxLines)})
	}
	o := Order{ID: req.ID, CustomerID: req.CustomerID, Currency: req.Currency, Card: req.Card, Status: PendingPayment}
	if len(req.Lines) <= MaxLines {
		for i, l := range req.Lines {
			p, ok := s.catalog.Product(l.SKU)
			if !ok {
				fields = append(fields, unknownSKU(i, l.SKU))
				continue
			}
			if l.Quantity < 1 || l.Quantity > MaxQuantity {
				fields = append(fields, errs.FieldError{Field: fieldOfLine(i, "quantity"), Reason: fmt.Sprintf("1 to %d", MaxQuantity)})
				continue
			}
			price, ok := p.Prices[req.Currency]
			if !ok {
				fields = append(fields, errs.FieldError{Field: fieldOfLine(i, "sku"), Reason: "not sold in " + quote(req.Currency)})
				continue
			}
			amount := price * l.Quantity // both bounded: no overflow
			o.Lines = append(o.Lines, Line{SKU: p.SKU, Name: p.Name, Quantity: l.Quantity, UnitPrice: price, Amount: amount})
			o.Total += amount
			if o.Total > money.MaxAmount {
				return Order{}, errs.E(errs.Invalid, "order total exceeds the maximum amount").
					WithFields(errs.FieldError{Field: "lines", Reason: "total too large"})
			}
		}
	}
	if len(fields) > 0 {
		return Order{}, errs.E(errs.Invalid, "invalid order").WithFields(fields...)
	}
	if req.ID == "" {
		return Order{}, errs.E(errs.Internal, "order id not derived from the intent")
	}
	return o, nil
}

func (s *service) Order(ctx context.Context, caller, id string) (Order, error) {
	return s.store.Order(ctx, caller, id)
}

func (s *service) CustomerOrders(ctx context.Context, caller, customerID string, page Page) (OrderList, error) {
	if f := customer.CheckID("id", customerID); f != nil {
		return OrderList{}, errs.E(errs.Invalid, "invalid customer id").WithFields(*f)
	}
	if page.Limit <= 0 {
		page.Limit = 20
	}
	if page.Limit > 100 {
		return OrderList{}, errs.E(errs.Invalid, "limit must be at most 100").WithFields(errs.FieldError{Field: "limit", Reason: "1 to 100"})
	}
	return s.store.CustomerOrders(ctx, caller, customerID, page)
}

func (s *service) CancelOrder(ctx context.Context, caller, id string) (Order, error) {
	o, moved, err := s.store.Transition(ctx, caller, id, PendingPayment, Cancelled, "", "")
	if err != nil {
		return Order{}, err
	}
	if !moved && o.Status != Cancelled {
		return o, illegalTransition(o.Status, Cancelled)
	}
	return o, nil
}

func (s *service) ApplyPaymentOutcome(ctx context.Context, ev events.PaymentOutcomeEvent) error {
	if ev.EventID == "" || ev.OrderID == "" {
		return errs.E(errs.Invalid, "payment outcome without event_id or order_id")
	}
	to := Paid
	switch ev.Status {
	case "succeeded":
	case "failed":
		to = PaymentFailed
	default:
		return errs.Errorf(errs.Invalid, "payment outcome has unknown status %q", ev.Status)
	}
	ctx, span := s.tracer.Start(ctx, "orders.apply_payment_outcome", trace.WithAttributes(
		attribute.String("order.id", ev.OrderID), attribute.String("payment.status", ev.Status)))
	defer span.End()
	if err := s.verifyOutcome(ctx, ev); err != nil {
		return err
	}
	applied, refund, err := s.store.ApplyOutcome(ctx, ev, to)
	if err != nil {
		return err
	}
	span.SetAttributes(attribute.Bool("inbox.applied", applied), attribute.Bool("order.refund_requested", refund))
	if refund {
		// The customer cancelled while the charge was in flight. The
		// store wrote an orders.refund_requested event with the inbox
		// row; payments refunds the capture in full.
		s.logger.WarnContext(ctx, "payment succeeded for a cancelled order; refund requested",
			"order_id", ev.OrderID, "payment_id", ev.PaymentID)
	}
	return nil
}

// verifyOutcome checks an outcome against the order it names: the seal,
// then that the payment is the one payments derives for this order and
// that it charged this order's caller, customer, amount and currency. An
// outcome that passes could only have been written by payments about this
// order; anything else is refused before it touches the inbox.
func (s *service) verifyOutcome(ctx context.Context, ev events.PaymentOutcomeEvent) error {
	if err := s.seal.Verify(ev, ev.Seal); err != nil {
		return unverifiable("outcome %s: %w", ev.EventID, err)
	}
	o, err := s.store.OrderByID(ctx, ev.OrderID)
	if errs.KindOf(err) == errs.NotFound {
		return unverifiable("outcome %s names order %q, which does not exist", ev.EventID, ev.OrderID)
	}
	if err != nil {
		return err
	}
	switch {
	case ev.PaymentID != events.PaymentIDForOrder(o.ID):
		return unverifiable("outcome %s: payment %q is not the payment of order %s", ev.EventID, ev.PaymentID, o.ID)
	case ev.Amount != o.Total || ev.Currency != o.Currency:
		return unverifiable("outcome %s: %d %s is not the order's %d %s", ev.EventID, ev.Amount, ev.Currency, o.Total, o.Currency)
	case ev.Caller != o.Caller || ev.CustomerID != o.CustomerID:
		return unverifiable("outcome %s: caller or customer is not the order's", ev.EventID)
	}
	return nil
}

func illegalTransition(from, to Status) error {
	return errs.Errorf(errs.Conflict, "order is %s; it cannot become %s", from, to).WithType("illegal-transition")
}

func fieldOfLine(i int, name string) string { return "lines[" + strconv.Itoa(i) + "]." + name }

func quote(s string) string { return strconv.Quote(s) }

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
