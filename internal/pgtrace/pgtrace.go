// Package pgtrace makes every SQL statement a span, so a payment's trace
// shows each query it ran, with its duration, inside the request or
// message that ran it.
package pgtrace

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracer implements pgx.QueryTracer with OpenTelemetry spans.
type Tracer struct {
	tracer trace.Tracer
	db     string
}

// New returns a tracer whose spans name db (the database's role, e.g.
// "payments").
func New(tp trace.TracerProvider, db string) *Tracer {
	return &Tracer{tracer: tp.Tracer("payonce/pgtrace"), db: db}
}

// TraceQueryStart starts a client span named after the statement's verb.
// The statement text is recorded; its arguments are not, because they can
// hold personal data (card numbers, in this simulation). Queries outside any
// trace (the outbox relay's and the recovery worker's polls) get no span:
// they would each be a trace of their own and bury the payments in noise.
func (t *Tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	ctx, _ = t.tracer.Start(ctx, "SQL "+verb(data.SQL), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system.name", "postgresql"),
		attribute.String("db.namespace", t.db),
		attribute.String("db.query.text", data.SQL),
	))
	return ctx
}

// TraceQueryEnd ends the span, recording an error and the rows affected.
func (t *Tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if data.Err != nil {
		span.RecordError(data.Err)
		span.SetStatus(codes.Error, "query failed")
	} else {
		span.SetAttributes(attribute.Int64("db.response.rows_affected", data.CommandTag.RowsAffected()))
	}
	span.End()
}

func verb(sql string) string {
	fields := strings.Fields(sql)
	if len(fields) == 0 {
		return "?"
	}
	return strings.ToUpper(fields[0])
}

// NewPool opens a pgx pool on url whose queries are traced, with at most
// maxConns connections (pgx's default, max(4, CPUs), when 0).
func NewPool(ctx context.Context, url string, tp trace.TracerProvider, db string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.Tracer = New(tp, db)
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
