package payments

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

	"github.com/payonce/payonce/internal/errs"
)

// RecoveryKind names what the recovery worker finishes.
type RecoveryKind string

// The kinds of unfinished work.
const (
	RecoverPayment RecoveryKind = "payment"
	RecoverRefund  RecoveryKind = "refund"
)

// RecoveryStore is what the recovery worker needs of the store: the rows
// due for a try, and a record of each try that failed.
type RecoveryStore interface {
	// DuePayments lists unfinished payments older than olderThan, not
	// parked, whose next try is due, longest-waiting first.
	DuePayments(ctx context.Context, olderThan time.Duration, limit int) ([]Payment, error)
	DueRefunds(ctx context.Context, olderThan time.Duration, limit int) ([]Refund, error)
	// DeferRecovery counts a failed try and sets the next one base x 2^tries
	// from now, at most ceiling; it returns the tries so far.
	DeferRecovery(ctx context.Context, kind RecoveryKind, id string, base, ceiling time.Duration) (int, error)
	// ParkRecovery sets aside, with the reason, a row that can never be
	// finished: the worker no longer tries it; an operator looks at it.
	ParkRecovery(ctx context.Context, kind RecoveryKind, id, reason string) error
}

// Recovery resumes unfinished payments and refunds. A payment whose process
// died mid-charge has no client guaranteed to retry it (an orders.created
// redelivery might, an API client might not), so this worker finishes it:
// same payment, same bank key, so the bank charges at most once. OlderThan
// keeps it away from charges a live process is still working on; if it does
// meet one, the customer lock makes it wait, and the fence makes whichever
// holder is stale harmless.
//
// A row it cannot finish now (the bank or the coordinator away) waits
// Interval x 2^tries, at most MaxBackoff, before its next try, so the
// worker goes through every unfinished row instead of the same oldest
// Batch again and again; a row that can never be finished (its data is
// invalid) is parked with the reason, so one bad row never blocks the rest.
type Recovery struct {
	Service   Service
	Store     RecoveryStore
	Interval  time.Duration
	OlderThan time.Duration
	// MaxBackoff caps the wait between two tries of one row; default 5m.
	MaxBackoff time.Duration
	// Batch bounds one pass per kind; default 100.
	Batch  int
	Tracer trace.Tracer
	Meter  metric.Meter
	Logger *slog.Logger
}

// resumer is the part of the service the worker drives, one row at a time.
type resumer interface {
	resumePayment(ctx context.Context, p Payment) error
	resumeRefund(ctx context.Context, r Refund) error
}

func (s *service) resumePayment(ctx context.Context, p Payment) error {
	_, err := s.settle(ctx, p)
	return err
}

// Run resumes work every Interval until ctx ends.
func (r *Recovery) Run(ctx context.Context) error {
	svc, ok := r.Service.(resumer)
	if !ok {
		return errors.New("recovery: the service is not this package's")
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 5 * time.Minute
	}
	if r.Batch <= 0 {
		r.Batch = 100
	}
	counter, err := r.Meter.Int64Counter("payonce.payments.recovery",
		metric.WithDescription("unfinished payments and refunds the recovery worker tried, by kind and outcome (healed, deferred, parked)"))
	if err != nil {
		return fmt.Errorf("recovery metric: %w", err)
	}
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		outcomes, err := r.pass(ctx, svc)
		for key, n := range outcomes {
			counter.Add(ctx, int64(n), metric.WithAttributes(attribute.String("kind", string(key.kind)), attribute.String("outcome", key.outcome)))
		}
		if err != nil && ctx.Err() == nil {
			r.Logger.WarnContext(ctx, "recovery pass failed; will retry", "err", err)
		}
	}
}

type recoveryOutcome struct {
	kind    RecoveryKind
	outcome string
}

// pass tries every due row once. A pass has no span of its own: most find
// nothing, and a trace every interval would bury the payments in noise (the
// polls get no SQL spans either, see internal/pgtrace). Each row it works
// on is a trace of its own ("payments.recover").
func (r *Recovery) pass(ctx context.Context, svc resumer) (map[recoveryOutcome]int, error) {
	out := map[recoveryOutcome]int{}
	due, err := r.Store.DuePayments(ctx, r.OlderThan, r.Batch)
	if err != nil {
		return out, err
	}
	for _, p := range due {
		outcome := r.try(ctx, RecoverPayment, p.ID, string(p.Status), func(ctx context.Context) error { return svc.resumePayment(ctx, p) })
		out[recoveryOutcome{RecoverPayment, outcome}]++
	}
	refunds, err := r.Store.DueRefunds(ctx, r.OlderThan, r.Batch)
	if err != nil {
		return out, err
	}
	for _, rf := range refunds {
		outcome := r.try(ctx, RecoverRefund, rf.ID, string(rf.Status), func(ctx context.Context) error { return svc.resumeRefund(ctx, rf) })
		out[recoveryOutcome{RecoverRefund, outcome}]++
	}
	return out, nil
}

// try finishes one row and records the outcome: healed, deferred (retried
// after its back-off) or parked (never retried).
func (r *Recovery) try(ctx context.Context, kind RecoveryKind, id, status string, finish func(context.Context) error) (outcome string) {
	ctx, span := r.Tracer.Start(ctx, "payments.recover", trace.WithAttributes(
		attribute.String("recovery.kind", string(kind)), attribute.String("recovery.id", id), attribute.String("recovery.status", status)))
	defer func() {
		span.SetAttributes(attribute.String("recovery.outcome", outcome))
		span.End()
	}()
	err := finish(ctx)
	if err == nil {
		r.Logger.InfoContext(ctx, "recovery: finished unfinished work", "kind", string(kind), "id", id, "was", status)
		return "healed"
	}
	if errors.Is(err, ErrNotOwner) {
		// Another instance owns the row's partition and heals it there.
		// Deferring here would push the owner's next try further out on
		// every pass a non-owner makes, so the row is left as it is.
		return "not-owner"
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, "not finished")
	if errs.KindOf(err) == errs.Invalid {
		if perr := r.Store.ParkRecovery(ctx, kind, id, err.Error()); perr != nil {
			r.Logger.WarnContext(ctx, "recovery: could not park", "kind", string(kind), "id", id, "err", perr)
			return "deferred"
		}
		r.Logger.ErrorContext(ctx, "recovery: parked; it can never be finished as it stands", "kind", string(kind), "id", id, "reason", err.Error())
		return "parked"
	}
	tries, derr := r.Store.DeferRecovery(ctx, kind, id, r.Interval, r.MaxBackoff)
	if derr != nil {
		r.Logger.WarnContext(ctx, "recovery: could not defer", "kind", string(kind), "id", id, "err", derr)
	}
	r.Logger.WarnContext(ctx, "recovery: not finished; will try again after its back-off", "kind", string(kind), "id", id, "tries", tries, "err", err)
	return "deferred"
}
