package idempotency

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

const instrumentationName = "github.com/payonce/payonce/pkg/idempotency"

// observer records what the middleware decided: a child span per decision
// (idempotency.begin, with the outcome as an attribute), an event on the
// request's span when the response is stored or the key released, and a
// counter per outcome, so a dashboard shows the replay and conflict rates
// and a trace shows why one request was not executed.
type observer struct {
	tracer    trace.Tracer
	decisions metric.Int64Counter
	endings   metric.Int64Counter
}

func newObserver(tp trace.TracerProvider, mp metric.MeterProvider) (observer, error) {
	meter := mp.Meter(instrumentationName)
	decisions, err := meter.Int64Counter("payonce.idempotency.requests",
		metric.WithDescription("Requests seen by the idempotency middleware, by outcome: claimed, resumed, replayed, in_flight, mismatch, expired, missing, invalid, unauthorized, unreadable, error."))
	if err != nil {
		return observer{}, err
	}
	endings, err := meter.Int64Counter("payonce.idempotency.completions",
		metric.WithDescription("Ends of executed requests, by result: stored (final answer kept), released (failure, key freed for a retry), lost (key taken over by another holder)."))
	if err != nil {
		return observer{}, err
	}
	return observer{tracer: tp.Tracer(instrumentationName), decisions: decisions, endings: endings}, nil
}

func (o observer) startBegin(ctx context.Context, key string) (context.Context, trace.Span) {
	return o.tracer.Start(ctx, "idempotency.begin", trace.WithAttributes(attribute.String("idempotency.key", key)))
}

func (o observer) endBegin(ctx context.Context, span trace.Span, a Attempt, err error) {
	outcome := string(a.Outcome)
	if err != nil {
		outcome = "error"
		span.RecordError(err)
		span.SetStatus(codes.Error, "idempotency store failed")
	}
	span.SetAttributes(attribute.String("idempotency.outcome", outcome))
	if a.Key != nil {
		span.SetAttributes(attribute.String("idempotency.recovery_point", a.Key.RecoveryPoint()))
	}
	span.End()
	o.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (o observer) refused(ctx context.Context, outcome string) {
	trace.SpanFromContext(ctx).AddEvent("idempotency." + outcome)
	o.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (o observer) completed(ctx context.Context, result string, key *Key) {
	trace.SpanFromContext(ctx).AddEvent("idempotency."+result,
		trace.WithAttributes(attribute.String("idempotency.recovery_point", key.RecoveryPoint())))
	o.endings.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

func (o observer) failed(ctx context.Context, err error) {
	trace.SpanFromContext(ctx).RecordError(err)
}
