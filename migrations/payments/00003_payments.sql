-- Payments and refunds, and the fence that makes fencing tokens count.

-- +goose Up
-- Copied from pkg/lock/fence.sql (pkg/lock's FenceSchema); a test keeps the
-- two equal. The highest fencing token each resource has seen: every write of
-- a charge moves its customer's token up (or keeps it), so a holder whose
-- lease expired, and who wakes up after a newer holder wrote, is refused.
CREATE TABLE IF NOT EXISTS fence_tokens (
    resource   text        PRIMARY KEY,
    token      bigint      NOT NULL CHECK (token > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE payments (
    id              uuid        PRIMARY KEY,
    -- The API caller that asked for the payment, or "orders" for payments
    -- made from orders.created events.
    caller          text        NOT NULL,
    customer_id     text        NOT NULL CHECK (customer_id <> ''),
    -- At most one payment per order, however often orders.created arrives.
    order_id        text        UNIQUE,
    amount          bigint      NOT NULL CHECK (amount > 0),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- SIMULATION ONLY: the bank simulator is charged with a test card
    -- number, kept so a resumed charge can be sent again. A real system
    -- stores the PSP's token here, never a card number.
    card            text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'authorizing', 'succeeded', 'failed')),
    -- The idempotency key of the bank call, derived from the payment: a
    -- resumed charge sends the same key, so the bank charges once.
    bank_key        text        NOT NULL UNIQUE,
    bank_charge_id  text,
    failure_reason  text,
    -- Refunds reserve their amount here in the transaction that creates
    -- them; the CHECK makes refunding more than was captured impossible,
    -- even for concurrent refunds.
    refunded_amount bigint      NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    -- The fencing token of the last write, for operators.
    fence_token     bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'succeeded' OR bank_charge_id IS NOT NULL)
);
CREATE INDEX payments_by_customer ON payments (customer_id, created_at DESC, id DESC);
-- The recovery worker's queue: charges that have not reached a final state.
CREATE INDEX payments_unfinished ON payments (updated_at) WHERE status IN ('pending', 'authorizing');

CREATE TABLE refunds (
    id             uuid        PRIMARY KEY,
    payment_id     uuid        NOT NULL REFERENCES payments (id),
    amount         bigint      NOT NULL CHECK (amount > 0),
    status         text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    bank_key       text        NOT NULL UNIQUE,
    bank_refund_id text,
    failure_reason text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);
CREATE INDEX refunds_unfinished ON refunds (updated_at) WHERE status = 'pending';

-- +goose Down
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE fence_tokens;
