package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/customer"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/failpoint"
	"github.com/payonce/payonce/internal/money"
)

// Config tunes the service.
type Config struct {
	// LockTTL is the lease on a customer's lock while charging it. It must
	// exceed a bank call's timeout, or healthy charges lose their lease.
	LockTTL time.Duration
	// Now is the clock for event timestamps (not for any decision).
	Now func() time.Time
	// Seal seals the outcomes the service writes and checks the events
	// it consumes (see events.SealKey).
	Seal events.SealKey
}

// service implements Service.
type service struct {
	store  Store
	locker Locker
	bank   Bank
	cfg    Config
	tracer trace.Tracer
	logger *slog.Logger
}

// NewService returns the payments service on its ports.
func NewService(store Store, locker Locker, bank Bank, cfg Config, tracer trace.Tracer, logger *slog.Logger) Service {
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &service{store: store, locker: locker, bank: bank, cfg: cfg, tracer: tracer, logger: logger}
}

func (s *service) CreatePayment(ctx context.Context, caller string, req CreatePaymentRequest) (Payment, error) {
	return s.pay(ctx, req, Payment{Caller: caller})
}

// unverifiable is the error of an event that fails its checks: an Invalid
// error of type "unverifiable-event", which the consumer terminates to the
// dead-letter stream without acting on it.
func unverifiable(why string, args ...any) error {
	return errs.Wrap(errs.Invalid, "event failed verification", fmt.Errorf(why, args...)).WithType("unverifiable-event")
}

func (s *service) PayOrder(ctx context.Context, ev events.OrderCreatedEvent) (Payment, error) {
	// Checked before anything is written: a forged order charges nothing
	// and leaves no row behind.
	if err := s.cfg.Seal.Verify(ev, ev.Seal); err != nil {
		return Payment{}, unverifiable("orders.created %s: %w", ev.EventID, err)
	}
	if ev.OrderID == "" || ev.Caller == "" {
		return Payment{}, unverifiable("orders.created %s without order_id or caller", ev.EventID)
	}
	req := CreatePaymentRequest{
		ID:         PaymentIDForOrder(ev.OrderID),
		CustomerID: ev.CustomerID,
		Amount:     ev.Amount,
		Currency:   ev.Currency,
		Card:       ev.Card,
	}
	// The inbox row (SourceEventID) is written with the payment, in one
	// transaction.
	// The payment belongs to the order's caller, who can then read it.
	return s.pay(ctx, req, Payment{Caller: ev.Caller, OrderID: ev.OrderID, SourceEventID: ev.EventID})
}

// pay records the intent req (with the origin fields of from: caller, order,
// source event) unless it is recorded already, and settles it. The lease on
// the customer is taken before anything is written, so a new intent is
// recorded already authorizing, under the fence, in one commit (one fsync
// fewer than recording it pending and then marking it). An intent that
// cannot get the lease (ErrNotOwner, the coordinator away) is not recorded:
// nothing is written, and the client's retry or the event's redelivery
// brings it again.
func (s *service) pay(ctx context.Context, req CreatePaymentRequest, from Payment) (Payment, error) {
	if err := validateCreate(req); err != nil {
		return Payment{}, err
	}
	intent := from
	intent.ID = req.ID
	intent.CustomerID = req.CustomerID
	intent.Amount = req.Amount
	intent.Currency = req.Currency
	intent.Card = req.Card
	intent.CardLast4 = req.Card[len(req.Card)-4:]
	intent.Status = Authorizing
	intent.BankKey = bankKey("payment", req.ID)
	return s.underLease(ctx, intent, func(ctx context.Context, fence Fence) (Payment, error) {
		p, created, err := s.store.CreatePayment(ctx, intent, fence)
		if err != nil {
			return p, err
		}
		if p.Amount != req.Amount || p.Currency != req.Currency || p.CustomerID != req.CustomerID || p.Caller != intent.Caller {
			// Only possible if two intents hash to one id; refuse rather than
			// answer one intent with another's payment.
			return Payment{}, errs.E(errs.Conflict, "a different payment already exists for this intent")
		}
		if !created {
			// A retry or a redelivery: the payment goes on from where it
			// stands, as the recovery worker would take it.
			return s.authorizeAndCharge(ctx, p, fence)
		}
		failpoint.Hit(FailAfterAuthorizing)
		return s.charge(ctx, p, fence)
	})
}

func (s *service) Payment(ctx context.Context, caller, id string) (Payment, error) {
	return s.store.CallerPayment(ctx, caller, id)
}

func (s *service) CustomerPayments(ctx context.Context, caller, customerID string, page Page) (PaymentList, error) {
	if f := customer.CheckID("id", customerID); f != nil {
		return PaymentList{}, errs.E(errs.Invalid, "invalid customer id").WithFields(*f)
	}
	if page.Limit <= 0 {
		page.Limit = 20
	}
	if page.Limit > 100 {
		return PaymentList{}, errs.E(errs.Invalid, "limit must be at most 100").WithFields(errs.FieldError{Field: "limit", Reason: "1 to 100"})
	}
	return s.store.CustomerPayments(ctx, caller, customerID, page)
}

// customerLock names the lock (and fence resource) that serialises charges
// of one customer across every payments instance. It is the caller's
// customer: two callers' `alice` never wait for each other.
func customerLock(p Payment) string { return CustomerLock(p.Caller, p.CustomerID) }

// settle drives a payment to a final state from wherever it stands. It is
// the one procedure behind every entry point (pay records a new intent
// under the same lease, then runs its steps), and it is safe to run again
// at any time, concurrently or after a crash: the lease serialises it per
// customer, the fence refuses a holder that lost its lease, and the bank
// key makes the bank call happen once. Its recovery points are the
// payment's statuses, each named by the failpoint after its commit:
// authorizing (FailAfterAuthorizing), the bank's answer, not yet recorded
// (FailAfterBankCharge), final (FailAfterFinish).
func (s *service) settle(ctx context.Context, p Payment) (Payment, error) {
	if p.Status.Final() {
		return p, nil
	}
	return s.underLease(ctx, p, func(ctx context.Context, fence Fence) (Payment, error) {
		return s.authorizeAndCharge(ctx, p, fence)
	})
}

// underLease runs work under the lease on p's customer, with the fence its
// writes must pass, inside the payments.settle span. work's context is
// cancelled the moment the lease may have been lost.
func (s *service) underLease(ctx context.Context, p Payment, work func(ctx context.Context, fence Fence) (Payment, error)) (Payment, error) {
	ctx, span := s.tracer.Start(ctx, "payments.settle", trace.WithAttributes(
		attribute.String("payment.id", p.ID), attribute.String("payment.status", string(p.Status))))
	defer span.End()

	lease, err := s.locker.Acquire(ctx, customerLock(p), s.cfg.LockTTL)
	if errors.Is(err, ErrNotOwner) {
		return p, err
	}
	if err != nil {
		return p, errs.Wrap(errs.Unavailable, "could not lock the customer for charging; retry", err).WithRetryAfter(1)
	}
	// Released once the writes made under it have ended: behind the API
	// the last one commits with the response, after work returns.
	defer s.store.AfterWrites(ctx, func() {
		if err := lease.Release(context.WithoutCancel(ctx)); err != nil {
			s.logger.DebugContext(ctx, "lease release", "err", err)
		}
	})
	// Work under the lease: if it may have been lost, stop at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !failpoint.Once(FailIgnoreLeaseLoss) {
		stop := context.AfterFunc(lease.Context(), cancel)
		defer stop()
	}
	fence := fenceOf(customerLock(p), lease)
	span.SetAttributes(attribute.Int64("lock.fence_token", int64(fence.Token)))
	if fence.Claimed {
		// Under the partition design the lease check was local: the
		// trace shows it here, as attributes, not as a lock.* span.
		span.SetAttributes(attribute.String("partition", fence.Resource), attribute.Int64("partition.token", int64(fence.Token)))
	}
	return work(ctx, fence)
}

// authorizeAndCharge takes a recorded payment, under its customer's lease,
// from its status to a final one: it marks it authorizing under the fence
// (a payment recorded by an earlier version may still be pending), then
// charges it. A final payment is returned as it is.
func (s *service) authorizeAndCharge(ctx context.Context, p Payment, fence Fence) (Payment, error) {
	if p.Status.Final() {
		return p, nil
	}
	p, err := s.store.MarkAuthorizing(ctx, p.ID, fence)
	if err != nil {
		return p, err
	}
	if p.Status.Final() {
		return p, nil
	}
	failpoint.Hit(FailAfterAuthorizing)
	return s.charge(ctx, p, fence)
}

// charge calls the bank for an authorizing payment and records its answer
// under the fence, with the outcome event.
func (s *service) charge(ctx context.Context, p Payment, fence Fence) (Payment, error) {
	result, err := s.bank.Charge(ctx, p.BankKey, BankCharge{Amount: p.Amount, Currency: p.Currency, Card: p.Card, Reference: p.ID})
	failpoint.Hit(FailAfterBankCharge)
	if err != nil {
		// The charge may or may not have happened. The payment stays
		// authorizing; a retry or the recovery worker asks the bank again
		// with the same key and learns which.
		return p, errs.Wrap(errs.Unavailable, "the bank did not answer; retry to get the result", err).WithRetryAfter(1)
	}
	status, reason := Succeeded, ""
	if result.Declined {
		status, reason = Failed, result.DeclineReason
	}
	ev := events.PaymentOutcomeEvent{
		EventID:       outcomeEventID(p.ID),
		PaymentID:     p.ID,
		OrderID:       p.OrderID,
		Caller:        p.Caller,
		CustomerID:    p.CustomerID,
		Amount:        p.Amount,
		Currency:      p.Currency,
		Status:        string(status),
		FailureReason: reason,
		OccurredAt:    s.cfg.Now().UTC(),
	}
	ev = s.cfg.Seal.SealPaymentOutcome(ev)
	// FailAfterFinish is hit by the store once this commit is durable:
	// behind the API that is when the response is stored with it.
	return s.store.FinishPayment(ctx, p.ID, fence, result, ev)
}

// Failpoints at each recovery point of a charge (see internal/failpoint):
// integration tests SIGKILL the process at each and prove that a retry or
// the recovery worker completes the payment with one bank charge. A new
// intent is recorded already authorizing (see pay), so "after the intent is
// recorded" and "after authorizing" are one point, FailAfterAuthorizing.
const (
	FailAfterAuthorizing = "payments.after_authorizing"
	FailAfterBankCharge  = "payments.after_bank_charge"
	FailAfterFinish      = "payments.after_finish"
	// FailIgnoreLeaseLoss makes the next charge go on after its lease may
	// have ended, like a holder frozen past its lease (SIGSTOP, a long GC
	// pause) whose timers have not fired yet when it writes: tests use it
	// to show that the fence alone refuses that write.
	FailIgnoreLeaseLoss = "payments.ignore_lease_loss"
)

func (s *service) RefundPayment(ctx context.Context, caller string, req RefundRequest) (Refund, error) {
	if req.Amount <= 0 || req.Amount > money.MaxAmount {
		return Refund{}, errs.E(errs.Invalid, "refund amount must be a positive number of minor units").
			WithFields(errs.FieldError{Field: "amount", Reason: "positive integer, minor units"})
	}
	// Scoped to the caller: another caller's payment is not found, and
	// nothing is reserved or sent to the bank.
	p, err := s.store.CallerPayment(ctx, caller, req.PaymentID)
	if err != nil {
		return Refund{}, err
	}
	if p.Status != Succeeded {
		return Refund{}, ErrNotRefundable
	}
	lease, err := s.locker.Acquire(ctx, customerLock(p), s.cfg.LockTTL)
	if errors.Is(err, ErrNotOwner) {
		return Refund{}, err
	}
	if err != nil {
		return Refund{}, errs.Wrap(errs.Unavailable, "could not lock the customer for refunding; retry", err).WithRetryAfter(1)
	}
	defer s.store.AfterWrites(ctx, func() { _ = lease.Release(context.WithoutCancel(ctx)) })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(lease.Context(), cancel)
	defer stop()
	fence := fenceOf(customerLock(p), lease)

	r, err := s.store.ReserveRefund(ctx, Refund{
		ID:        req.ID,
		PaymentID: p.ID,
		Amount:    req.Amount,
		Currency:  p.Currency,
		Status:    RefundPending,
		BankKey:   bankKey("refund", req.ID),
	}, fence)
	if err != nil {
		return Refund{}, err
	}
	return s.finishRefund(ctx, r, p.BankChargeID, fence)
}

func (s *service) RefundOrder(ctx context.Context, ev events.RefundRequestedEvent) (Refund, error) {
	if err := s.cfg.Seal.Verify(ev, ev.Seal); err != nil {
		return Refund{}, unverifiable("orders.refund_requested %s: %w", ev.EventID, err)
	}
	if ev.OrderID == "" || ev.PaymentID != PaymentIDForOrder(ev.OrderID) {
		return Refund{}, unverifiable("refund request %s does not name the payment of its order", ev.EventID)
	}
	ctx, span := s.tracer.Start(ctx, "payments.refund_order", trace.WithAttributes(
		attribute.String("order.id", ev.OrderID), attribute.String("payment.id", ev.PaymentID)))
	defer span.End()
	p, err := s.store.Payment(ctx, ev.PaymentID)
	if errs.KindOf(err) == errs.NotFound {
		return Refund{}, unverifiable("refund request %s: payment %s is not one of ours", ev.EventID, ev.PaymentID)
	}
	if err != nil {
		return Refund{}, err
	}
	if p.OrderID != ev.OrderID || p.Caller != ev.Caller {
		return Refund{}, unverifiable("refund request %s: payment %s is not this caller's order's", ev.EventID, p.ID)
	}
	// The amount is what this service captured and has not refunded yet,
	// not what the event says; a redelivery finds the refund it started
	// and finishes that one.
	id := RefundIDForOrder(ev.OrderID)
	amount := p.Amount - p.RefundedAmount
	if r, err := s.store.Refund(ctx, id); err == nil {
		amount = r.Amount
	} else if !errors.Is(err, ErrRefundNotFound) {
		return Refund{}, err
	}
	if amount <= 0 {
		// Refunded in full already, through the API.
		return Refund{}, nil
	}
	r, err := s.RefundPayment(ctx, p.Caller, RefundRequest{ID: id, PaymentID: p.ID, Amount: amount})
	if errors.Is(err, ErrRefundExceedsCaptured) {
		// A refund through the API raced this one; the next delivery
		// recomputes what is left.
		return r, errs.Wrap(errs.Unavailable, "refund raced another; retry", err)
	}
	return r, err
}

func (s *service) finishRefund(ctx context.Context, r Refund, chargeID string, fence Fence) (Refund, error) {
	if r.Status != RefundPending {
		return r, nil
	}
	result, err := s.bank.Refund(ctx, r.BankKey, chargeID, r.Amount)
	if err != nil {
		return r, errs.Wrap(errs.Unavailable, "the bank did not answer; retry to get the result", err).WithRetryAfter(1)
	}
	return s.store.FinishRefund(ctx, r.ID, fence, result)
}

func (s *service) ResumeUnfinished(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	stuck, err := s.store.UnfinishedPayments(ctx, olderThan, limit)
	if err != nil {
		return 0, err
	}
	done := 0
	var failures []error
	for _, p := range stuck {
		s.logger.InfoContext(ctx, "resuming unfinished payment", "payment_id", p.ID, "status", string(p.Status))
		if _, err := s.settle(ctx, p); errors.Is(err, ErrNotOwner) {
			continue // its partition's owner resumes it
		} else if err != nil {
			failures = append(failures, fmt.Errorf("payment %s: %w", p.ID, err))
			continue
		}
		done++
	}
	refunds, err := s.store.UnfinishedRefunds(ctx, olderThan, limit)
	if err != nil {
		return done, err
	}
	for _, r := range refunds {
		if err := s.resumeRefund(ctx, r); errors.Is(err, ErrNotOwner) {
			continue
		} else if err != nil {
			failures = append(failures, fmt.Errorf("refund %s: %w", r.ID, err))
			continue
		}
		done++
	}
	return done, errors.Join(failures...)
}

func (s *service) resumeRefund(ctx context.Context, r Refund) error {
	p, err := s.store.Payment(ctx, r.PaymentID)
	if err != nil {
		return err
	}
	lease, err := s.locker.Acquire(ctx, customerLock(p), s.cfg.LockTTL)
	if errors.Is(err, ErrNotOwner) {
		return err
	}
	if err != nil {
		return errs.Wrap(errs.Unavailable, "could not lock the customer", err)
	}
	defer s.store.AfterWrites(ctx, func() { _ = lease.Release(context.WithoutCancel(ctx)) })
	_, err = s.finishRefund(ctx, r, p.BankChargeID, fenceOf(customerLock(p), lease))
	return err
}

func validateCreate(req CreatePaymentRequest) error {
	var fields []errs.FieldError
	if f := customer.CheckID("customer_id", req.CustomerID); f != nil {
		fields = append(fields, *f)
	}
	if err := (money.Money{Amount: req.Amount, Currency: money.Currency(req.Currency)}).Validate(); err != nil {
		fields = append(fields, errs.As(err).Fields...)
	}
	if len(req.Card) < 12 || len(req.Card) > 19 || !digits(req.Card) {
		fields = append(fields, errs.FieldError{Field: "card", Reason: "12 to 19 digits"})
	}
	if req.ID == "" {
		return errs.E(errs.Internal, "payment id not derived from the intent")
	}
	if len(fields) > 0 {
		return errs.E(errs.Invalid, "invalid payment request").WithFields(fields...)
	}
	return nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
