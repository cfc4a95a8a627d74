-- Orders. The state machine is enforced twice: by the service, and here, by
-- the CHECK on status and by transitions written as
-- UPDATE ... WHERE status = 'pending_payment', so two concurrent moves of one
-- order cannot both succeed.

-- +goose Up
CREATE TABLE orders (
    id             uuid        PRIMARY KEY,
    caller         text        NOT NULL,
    customer_id    text        NOT NULL CHECK (customer_id <> ''),
    currency       text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Lines with the catalog prices used; the total is their sum.
    lines          jsonb       NOT NULL,
    total          bigint      NOT NULL CHECK (total > 0),
    status         text        NOT NULL CHECK (status IN ('pending_payment', 'paid', 'payment_failed', 'cancelled')),
    -- SIMULATION ONLY: see payments.card.
    card           text        NOT NULL,
    payment_id     text,
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, id DESC);

-- +goose Down
DROP TABLE orders;
