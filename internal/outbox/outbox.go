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
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
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

// FailDropPrefix names the failpoints (internal/failpoint, Once) that make
// the relay drop one event: "outbox.drop:orders.created" marks the next
// orders.created row published without publishing it, the way a lost
// event looks to everyone downstream. Tests use it to show reconciliation.
const FailDropPrefix = "outbox.drop:"

// Defaults of a Relay's settings.
const (
	// DefaultClaimTTL is how long a relay's claim on a batch lasts. A relay
	// that dies mid-batch leaves its rows to the others after this.
	DefaultClaimTTL = 30 * time.Second
	// DefaultOutboxRetention keeps published rows a week, for an operator
	// to look at; nothing reads them after they are published.
	DefaultOutboxRetention = 7 * 24 * time.Hour
	// InboxRetention is how long a consumer's inbox keeps a message id. A
	// message can be redelivered for as long as its stream keeps it
	// (eventbus.MaxAge, since delivery is unlimited), and a dead letter can
	// be replayed for as long as the dead-letter stream keeps it (MaxAge
	// again, counted from the dead-lettering): so no copy of a message can
	// arrive later than 2*MaxAge after it was first published. A day on
	// top absorbs clock skew between the database and the NATS servers.
	InboxRetention = 2*eventbus.MaxAge + 24*time.Hour
	// DefaultPruneInterval is how often a relay prunes.
	DefaultPruneInterval = time.Hour
)

// Relay publishes unpublished outbox rows and marks them published.
// Several relays (one per service instance) can run against one database:
// each claims a batch with a lease (claimed_until) in one short statement,
// publishes it with no transaction open, and marks each row published only
// once JetStream has acknowledged it (stored, on a majority of the
// replicas when the stream is R3). A crash between the two re-publishes
// after the lease, which the duplicate window and the inbox absorb.
type Relay struct {
	Pool       *pgxpool.Pool
	Publisher  eventbus.Publisher
	Propagator propagation.TextMapPropagator
	Tracer     trace.Tracer
	Logger     *slog.Logger
	// Batch is the most rows claimed at once; default 100.
	Batch int
	// Interval is the poll period when nobody nudges; default 200ms.
	Interval time.Duration
	// ClaimTTL is the lease on a claimed batch; default DefaultClaimTTL.
	ClaimTTL time.Duration
	// OutboxRetention is how long published rows are kept; default
	// DefaultOutboxRetention. Parked rows are never pruned.
	OutboxRetention time.Duration
	// PruneInterval is how often Run prunes; default DefaultPruneInterval.
	PruneInterval time.Duration
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
	if r.ClaimTTL <= 0 {
		r.ClaimTTL = DefaultClaimTTL
	}
	if r.OutboxRetention <= 0 {
		r.OutboxRetention = DefaultOutboxRetention
	}
	if r.PruneInterval <= 0 {
		r.PruneInterval = DefaultPruneInterval
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

// Run relays until ctx ends, and prunes every PruneInterval.
func (r *Relay) Run(ctx context.Context) error {
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	prune := time.NewTicker(r.PruneInterval)
	defer prune.Stop()
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
		case <-prune.C:
			outbox, inbox, err := r.Prune(ctx)
			if err != nil && ctx.Err() == nil {
				r.Logger.WarnContext(ctx, "outbox/inbox pruning failed; will retry", "err", err)
			} else if outbox+inbox > 0 {
				r.Logger.InfoContext(ctx, "pruned outbox and inbox", "outbox_rows", outbox, "inbox_rows", inbox)
			}
		}
	}
}

// Prune deletes outbox rows published longer than OutboxRetention ago and
// inbox rows older than InboxRetention, by the database clock.
func (r *Relay) Prune(ctx context.Context) (outboxRows, inboxRows int64, err error) {
	tag, err := r.Pool.Exec(ctx, `DELETE FROM outbox WHERE published_at < now() - $1::interval`, r.OutboxRetention)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox prune: %w", err)
	}
	outboxRows = tag.RowsAffected()
	tag, err = r.Pool.Exec(ctx, `DELETE FROM inbox WHERE received_at < now() - $1::interval`, InboxRetention)
	if err != nil {
		return outboxRows, 0, fmt.Errorf("inbox prune: %w", err)
	}
	return outboxRows, tag.RowsAffected(), nil
}

// PermanentPublishError reports why a row can never be published; the
// relay parks the row with this reason instead of retrying it.
type PermanentPublishError struct{ Reason string }

func (e *PermanentPublishError) Error() string { return "cannot be published: " + e.Reason }

// classifyPublish tells a row that can never be published (no stream holds
// its subject, or it is larger than the server takes) from an outage.
func classifyPublish(subject string, payload []byte, maxPayload int64, err error) error {
	if _, serr := eventbus.StreamOf(subject); serr != nil {
		return &PermanentPublishError{Reason: serr.Error()}
	}
	if maxPayload > 0 && int64(len(payload)) > maxPayload {
		return &PermanentPublishError{Reason: fmt.Sprintf("payload of %d bytes exceeds the server's maximum of %d", len(payload), maxPayload)}
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		return &PermanentPublishError{Reason: err.Error()}
	}
	return err
}

type claimedRow struct {
	id, subject string
	payload     []byte
	headers     map[string]string
	createdAt   time.Time
}

// RelayOnce claims up to Batch publishable rows, oldest first, publishes
// them and marks each published on JetStream's acknowledgement. A row that
// can never be published is parked with its reason; an outage stops the
// batch, and its unpublished rows are given back. It returns how many rows
// it published.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	rows, err := r.Pool.Query(ctx, `
		UPDATE outbox SET claimed_until = now() + $2::interval, attempts = attempts + 1
		WHERE id IN (
			SELECT id FROM outbox
			WHERE published_at IS NULL AND parked_at IS NULL
			  AND (claimed_until IS NULL OR claimed_until < now())
			ORDER BY created_at, id
			LIMIT $1
			FOR UPDATE SKIP LOCKED)
		RETURNING id::text, subject, payload, headers, created_at`, r.Batch, r.ClaimTTL)
	if err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (claimedRow, error) {
		var x claimedRow
		err := row.Scan(&x.id, &x.subject, &x.payload, &x.headers, &x.createdAt)
		return x, err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox relay: claim: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	sort.Slice(batch, func(i, j int) bool {
		if !batch[i].createdAt.Equal(batch[j].createdAt) {
			return batch[i].createdAt.Before(batch[j].createdAt)
		}
		return batch[i].id < batch[j].id
	})
	var maxPayload int64
	if nc := r.Publisher.JS.Conn(); nc != nil {
		maxPayload = nc.MaxPayload()
	}
	published := make([]string, 0, len(batch))
	var unpublished []string
	var publishErr error
	for i, x := range batch {
		// Continue the trace of the request that wrote the event.
		evCtx := r.Propagator.Extract(ctx, propagation.MapCarrier(x.headers))
		evCtx, span := r.Tracer.Start(evCtx, "outbox relay "+x.subject, trace.WithSpanKind(trace.SpanKindInternal))
		var err error
		if _, serr := eventbus.StreamOf(x.subject); serr != nil {
			err = serr // never reaches the server: it would only time out
		} else if failpoint.Once(FailDropPrefix + x.subject) {
			r.Logger.WarnContext(ctx, "failpoint: event dropped on purpose", "id", x.id, "subject", x.subject)
		} else {
			_, err = r.Publisher.Publish(evCtx, x.subject, x.id, x.payload)
		}
		span.End()
		if err == nil {
			published = append(published, x.id)
			continue
		}
		var perm *PermanentPublishError
		if errors.As(classifyPublish(x.subject, x.payload, maxPayload, err), &perm) {
			if perr := r.park(ctx, x.id, perm.Reason); perr != nil {
				publishErr = perr
				unpublished = append(unpublished, rowIDs(batch[i:])...)
				break
			}
			r.Logger.ErrorContext(ctx, "outbox row parked: it can never be published; the rows behind it go on",
				"id", x.id, "subject", x.subject, "reason", perm.Reason)
			continue
		}
		// An outage: this row and the rest wait for the next run.
		publishErr = fmt.Errorf("outbox relay: publish %s: %w", x.id, err)
		unpublished = append(unpublished, rowIDs(batch[i:])...)
		break
	}
	// A crash here is the relay's worst moment: published, not marked.
	failpoint.Hit(FailAfterPublish)
	if r.AfterPublish != nil && len(published) > 0 {
		if err := r.AfterPublish(published); err != nil {
			r.release(ctx, rowIDs(batch))
			return 0, fmt.Errorf("outbox relay: after publish: %w", err)
		}
	}
	if len(published) > 0 {
		if _, err := r.Pool.Exec(ctx, `UPDATE outbox SET published_at = now(), claimed_until = NULL WHERE id = ANY($1::uuid[])`, published); err != nil {
			return 0, fmt.Errorf("outbox relay: mark: %w", err)
		}
	}
	r.release(ctx, unpublished)
	if publishErr != nil && len(published) == 0 {
		return 0, publishErr
	}
	return len(published), nil
}

func rowIDs(rows []claimedRow) []string {
	ids := make([]string, len(rows))
	for i, x := range rows {
		ids[i] = x.id
	}
	return ids
}

// release gives claimed rows back at once, so the next run retries them
// without waiting for the lease; if it fails, the lease runs out anyway.
func (r *Relay) release(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	if _, err := r.Pool.Exec(context.WithoutCancel(ctx), `UPDATE outbox SET claimed_until = NULL WHERE id = ANY($1::uuid[]) AND published_at IS NULL`, ids); err != nil {
		r.Logger.DebugContext(ctx, "outbox relay: release claims", "err", err)
	}
}

// park sets a row aside with the reason it cannot be published. It stays
// in the table (never pruned) for an operator: see docs/outbox-inbox.md.
func (r *Relay) park(ctx context.Context, id, reason string) error {
	if _, err := r.Pool.Exec(ctx, `UPDATE outbox SET parked_at = now(), park_reason = $2, claimed_until = NULL WHERE id = $1`, id, reason); err != nil {
		return fmt.Errorf("outbox relay: park %s: %w", id, err)
	}
	return nil
}
