-- The outbox relay claims rows with a short lease instead of holding a
-- transaction open while it publishes, parks a row that can never be
-- published (with the reason) instead of blocking every row behind it, and
-- published outbox rows and old inbox rows are pruned after a retention
-- (see internal/outbox and docs/outbox-inbox.md).

-- +goose Up
ALTER TABLE outbox
    ADD COLUMN claimed_until timestamptz,
    ADD COLUMN attempts      integer     NOT NULL DEFAULT 0,
    ADD COLUMN parked_at     timestamptz,
    ADD COLUMN park_reason   text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_pending ON outbox (created_at, id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX inbox_received ON inbox (received_at);

-- +goose Down
DROP INDEX inbox_received;
DROP INDEX outbox_published;
DROP INDEX outbox_pending;
CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;
ALTER TABLE outbox DROP COLUMN park_reason, DROP COLUMN parked_at, DROP COLUMN attempts, DROP COLUMN claimed_until;
