-- The transactional outbox and the idempotent inbox of the orders service.
--
-- A state change and the event announcing it are written in one transaction
-- (outbox), so an event is never lost nor sent for a change that rolled back.
-- A relay publishes unpublished rows with Nats-Msg-Id = id and then stamps
-- published_at; a crash between the two republishes, which JetStream's
-- duplicate window and the consumer's inbox absorb.

-- +goose Up
CREATE TABLE outbox (
    id           uuid        PRIMARY KEY,
    subject      text        NOT NULL CHECK (subject <> ''),
    payload      jsonb       NOT NULL,
    -- W3C trace context captured when the event was written, so the relay's
    -- publish joins the trace of the request that caused it.
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (created_at) WHERE published_at IS NULL;

-- A consumer records each message id in the same transaction as the effect
-- of the message; a redelivered message hits the primary key and is acked
-- without doing its work twice.
CREATE TABLE inbox (
    consumer    text        NOT NULL,
    message_id  text        NOT NULL,
    subject     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- +goose Down
DROP TABLE inbox;
DROP TABLE outbox;
