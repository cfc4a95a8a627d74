// Package outbox implements the transactional outbox: a service writes the
// event announcing a state change into its own database, in the same
// transaction as the change, and a relay publishes it to JetStream later.
//
// Publishing directly from a request handler has two failure modes that
// lose consistency: the change commits and the process dies before
// publishing (the event is lost), or the publish succeeds and the commit
// fails (the event announces something that never happened). With the
// outbox, the event exists exactly when the change does; the relay then
// delivers it at least once, and Nats-Msg-Id (= the row's id) plus the
// consumer's inbox turn that into exactly one effect.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/eventbus"
	"github.com/payonce/payonce/internal/failpoint"
)

// Write adds an event to the outbox inside tx. The trace context of ctx is
// stored with it, so the relay's publish continues the trace of the request
// that caused the event.
func Write(ctx context.Context, tx pgx.Tx, prop propagation.TextMapPropagator, subject, id string, payload any) error {
	data, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("outbox: encode %s: %w", subject, err)
	}
	carrier := propagation.MapCarrier{}
	prop.Inject(ctx, carrier)
	headers, _ := json.Marshal(carrier)
	if _, err := tx.Exec(ctx,
		`INSERT INTO outbox (id, subject, payload, headers) VALUES ($1, $2, $3, $4)`,
		id, subject, data, headers); err != nil {
		return fmt.Errorf("outbox: write %s %s: %w", subject, id, err)
	}
	return nil
}

// FailAfterPublish is the failpoint (internal/failpoint) between publishing
// a batch and marking it published.
const FailAfterPublish = "outbox.after_publish"

// Relay publishes unpublished outbox rows and marks them published.
// Several relays (one per service instance) can run against one database:
// rows are claimed with FOR UPDATE SKIP LOCKED, so each batch goes out
// through one relay at a time.
type Relay struct {
	Pool       *pgxpool.Pool
	Publisher  eventbus.Publisher
	Propagator propagation.TextMapPropagator
	Tracer     trace.Tracer
	Logger     *slog.Logger
	// Batch is the most rows published per transaction; default 100.
	Batch int
	// Interval is the poll period when nobody nudges; default 200ms.
	Interval time.Duration
	// AfterPublish, when set, runs after a batch is published and before
	// it is marked; an error aborts the marking. Tests use it to stand for
	// a crash at the worst moment.
	AfterPublish func(ids []string) error

	nudge chan struct{}
}

// NewRelay returns a relay with defaults filled in.
func NewRelay(r Relay) *Relay {
	if r.Batch <= 0 {
		r.Batch = 100
	}
	if r.Interval <= 0 {
		r.Interval = 200 * time.Millisecond
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	r.nudge = make(chan struct{}, 1)
	return &r
}

// Nudge asks the relay to run now rather than at its next poll; services
// call it after committing an outbox row so events leave without delay.
func (r *Relay) Nudge() {
	select {
	case r.nudge <- struct{}{}:
	default:
	}
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	for {
		for {
			n, err := r.RelayOnce(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				r.Logger.WarnContext(ctx, "outbox relay failed; will retry", "err", err)
				break
			}
			if n < r.Batch {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-r.nudge:
		}
	}
}

// RelayOnce publishes up to Batch unpublished rows, oldest first, and marks
// them. It returns how many it published.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	tx, err := r.Pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox relay: begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `
		SELECT id::text, subject, payload, headers FROM outbox
		WHERE published_at IS NULL
		ORDER BY created_at, id
		LIMIT $1
		FOR UPDATE SKIP LOCKED`, r.Batch)
	if err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	type row struct {
		id, subject string
		payload     []byte
		headers     map[string]string
	}
	var batch []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.subject, &x.payload, &x.headers); err != nil {
			rows.Close()
			return 0, fmt.Errorf("outbox relay: scan: %w", err)
		}
		batch = append(batch, x)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	ids := make([]string, 0, len(batch))
	for _, x := range batch {
		// Continue the trace of the request that wrote the event.
		evCtx := r.Propagator.Extract(ctx, propagation.MapCarrier(x.headers))
		evCtx, span := r.Tracer.Start(evCtx, "outbox relay "+x.subject, trace.WithSpanKind(trace.SpanKindInternal))
		_, err := r.Publisher.Publish(evCtx, x.subject, x.id, x.payload)
		span.End()
		if err != nil {
			// Publish what went out so far; this row waits for the next run.
			break
		}
		ids = append(ids, x.id)
	}
	if len(ids) == 0 {
		return 0, errors.New("outbox relay: could not publish the oldest row")
	}
	// A crash here is the relay's worst moment: published, not marked.
	failpoint.Hit(FailAfterPublish)
	if r.AfterPublish != nil {
		if err := r.AfterPublish(ids); err != nil {
			return 0, fmt.Errorf("outbox relay: after publish: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE id = ANY($1::uuid[])`, ids); err != nil {
		return 0, fmt.Errorf("outbox relay: mark: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("outbox relay: commit: %w", err)
	}
	return len(ids), nil
}
