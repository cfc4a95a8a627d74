package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/events"
)

// PaymentView is what payments says about the payment of an order (its
// REST read, GET /v1/payments/{id}).
type PaymentView struct {
	ID            string
	Caller        string
	OrderID       string
	CustomerID    string
	Amount        int64
	Currency      string
	Status        string
	FailureReason string
}

// ErrNoPayment is what a PaymentReader returns when payments has no
// payment for the order: it never saw its orders.created.
var ErrNoPayment = errors.New("payments has no payment for this order")

// PaymentReader reads the payment of an order from payments, the source of
// truth for it. Any error but ErrNoPayment means "could not tell now".
type PaymentReader interface {
	PaymentOfOrder(ctx context.Context, orderID string) (PaymentView, error)
}

// ReconcileStore is what the sweeper needs of the orders store.
type ReconcileStore interface {
	// StalePendingOrders returns up to limit orders pending for longer
	// than olderThan and not looked at by the sweeper for that long,
	// stamping them as looked at, in one statement; by the database clock.
	StalePendingOrders(ctx context.Context, olderThan time.Duration, limit int) ([]Order, error)
	// ReemitOrderCreated writes ev to the outbox again, under a new row
	// id (so JetStream does not drop it as a duplicate) with the same
	// event id, unless a row with that event id is still waiting to be
	// published; it reports whether it wrote one.
	ReemitOrderCreated(ctx context.Context, ev events.OrderCreatedEvent) (bool, error)
}

// Reconciliation outcomes, as the sweeper counts and logs them.
const (
	ReconcileSettled    = "settled"     // a final payment outcome applied
	ReconcileReemitted  = "reemitted"   // orders.created published again
	ReconcileInProgress = "in_progress" // payments is still charging it
	ReconcileWaiting    = "waiting"     // its orders.created is still in the outbox
	ReconcileUnknown    = "unknown"     // payments could not be asked; next sweep
	ReconcileMismatch   = "mismatch"    // payments' payment disagrees with the order
)

// Sweeper settles orders left pending_payment by a lost or undelivered
// event, from the source of truth. An outage longer than any redelivery,
// a dropped event or a bug leaves an order waiting; the sweeper asks
// payments for the order's derived payment and either applies its final
// outcome (the same event, the same inbox key, as NATS would have
// delivered), or, if payments never heard of the order, publishes its
// orders.created again. Both are safe to repeat: every id is derived from
// the order, so payments charges at most once and orders moves once.
type Sweeper struct {
	Store    ReconcileStore
	Service  Service
	Payments PaymentReader
	// Seal seals what the sweeper hands on: the re-emitted orders.created,
	// and the outcome read from payments, which then passes through
	// Service.ApplyPaymentOutcome and its checks like any outcome.
	Seal events.SealKey
	// OlderThan is the age at which a pending order is looked into, and
	// again after each look. It should exceed a normal charge's duration.
	OlderThan time.Duration
	// Interval is how often the sweeper runs.
	Interval time.Duration
	// Batch bounds one sweep; default 100.
	Batch  int
	Tracer trace.Tracer
	Meter  metric.Meter
	Logger *slog.Logger
}

// Run sweeps every Interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) error {
	counter, err := s.Meter.Int64Counter("payonce.orders.reconciled",
		metric.WithDescription("pending orders the reconciliation sweeper looked into, by outcome"))
	if err != nil {
		return fmt.Errorf("reconcile metric: %w", err)
	}
	tick := time.NewTicker(s.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		outcomes, err := s.SweepOnce(ctx)
		for outcome, n := range outcomes {
			counter.Add(ctx, int64(n), metric.WithAttributes(attribute.String("outcome", outcome)))
		}
		if err != nil && ctx.Err() == nil {
			s.Logger.WarnContext(ctx, "reconciliation sweep failed; will retry", "err", err)
		}
	}
}

// SweepOnce looks into one batch of stale pending orders and returns how
// many ended in each outcome.
func (s *Sweeper) SweepOnce(ctx context.Context) (map[string]int, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = 100
	}
	// No span for the sweep itself: most sweeps find nothing, and a trace
	// every interval would bury the orders in noise. Each order it settles
	// is a trace of its own ("orders.reconcile_order").
	stale, err := s.Store.StalePendingOrders(ctx, s.OlderThan, batch)
	if err != nil {
		return nil, fmt.Errorf("list stale pending orders: %w", err)
	}
	outcomes := map[string]int{}
	var failures []error
	for _, o := range stale {
		outcome, err := s.reconcile(ctx, o)
		outcomes[outcome]++
		if err != nil {
			failures = append(failures, fmt.Errorf("order %s: %w", o.ID, err))
		}
	}
	return outcomes, errors.Join(failures...)
}

// reconcile settles one order. Every branch is safe to run again.
func (s *Sweeper) reconcile(ctx context.Context, o Order) (outcome string, err error) {
	ctx, span := s.Tracer.Start(ctx, "orders.reconcile_order", trace.WithAttributes(attribute.String("order.id", o.ID)))
	defer func() {
		span.SetAttributes(attribute.String("reconcile.outcome", outcome))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, outcome)
		}
		span.End()
	}()
	p, err := s.Payments.PaymentOfOrder(ctx, o.ID)
	switch {
	case errors.Is(err, ErrNoPayment):
		ev := events.OrderCreatedEvent{
			EventID:    createdEventID(o.ID),
			OrderID:    o.ID,
			Caller:     o.Caller,
			CustomerID: o.CustomerID,
			Amount:     o.Total,
			Currency:   o.Currency,
			Card:       o.Card,
			OccurredAt: o.CreatedAt,
		}
		wrote, err := s.Store.ReemitOrderCreated(ctx, s.Seal.SealOrderCreated(ev))
		if err != nil {
			return ReconcileUnknown, err
		}
		if !wrote {
			return ReconcileWaiting, nil
		}
		s.Logger.InfoContext(ctx, "reconciliation: payments never saw this order; orders.created published again",
			"order_id", o.ID, "age", time.Since(o.CreatedAt).Round(time.Second).String())
		return ReconcileReemitted, nil
	case err != nil:
		return ReconcileUnknown, err
	}
	if p.Amount != o.Total || p.Currency != o.Currency || p.CustomerID != o.CustomerID || p.Caller != o.Caller {
		s.Logger.ErrorContext(ctx, "reconciliation: payments' payment disagrees with the order; left for an operator",
			"order_id", o.ID, "payment_id", p.ID, "order_total", o.Total, "payment_amount", p.Amount)
		return ReconcileMismatch, nil
	}
	if p.Status != "succeeded" && p.Status != "failed" {
		return ReconcileInProgress, nil
	}
	ev := events.PaymentOutcomeEvent{
		EventID:       events.PaymentOutcomeEventID(p.ID),
		PaymentID:     p.ID,
		OrderID:       o.ID,
		Caller:        p.Caller,
		CustomerID:    p.CustomerID,
		Amount:        p.Amount,
		Currency:      p.Currency,
		Status:        p.Status,
		FailureReason: p.FailureReason,
		OccurredAt:    time.Now().UTC(),
	}
	// The outcome comes from payments' authenticated REST answer, not
	// from NATS; sealed here, it goes through the one path every outcome
	// takes, with its checks against the order and its inbox.
	if err := s.Service.ApplyPaymentOutcome(ctx, s.Seal.SealPaymentOutcome(ev)); err != nil {
		return ReconcileUnknown, err
	}
	s.Logger.InfoContext(ctx, "reconciliation: final payment outcome applied to a pending order",
		"order_id", o.ID, "payment_id", p.ID, "payment_status", p.Status, "age", time.Since(o.CreatedAt).Round(time.Second).String())
	return ReconcileSettled, nil
}
