-- The recovery worker (services/payments/recovery.go) keeps, per payment
-- and refund, how often it has failed to finish it and when to try next,
-- so a row it cannot finish now waits its turn instead of being retried
-- on every pass ahead of the rest; and it parks, with the reason, a row it
-- can never finish, so one bad row never blocks the others.

-- +goose Up
ALTER TABLE payments
    ADD COLUMN recovery_attempts    integer NOT NULL DEFAULT 0,
    ADD COLUMN recovery_next_at     timestamptz,
    ADD COLUMN recovery_parked_at   timestamptz,
    ADD COLUMN recovery_park_reason text;
ALTER TABLE refunds
    ADD COLUMN recovery_attempts    integer NOT NULL DEFAULT 0,
    ADD COLUMN recovery_next_at     timestamptz,
    ADD COLUMN recovery_parked_at   timestamptz,
    ADD COLUMN recovery_park_reason text;
CREATE INDEX payments_recovery_due ON payments (coalesce(recovery_next_at, updated_at))
    WHERE status IN ('pending', 'authorizing') AND recovery_parked_at IS NULL;

-- +goose Down
DROP INDEX payments_recovery_due;
ALTER TABLE refunds DROP COLUMN recovery_park_reason, DROP COLUMN recovery_parked_at, DROP COLUMN recovery_next_at, DROP COLUMN recovery_attempts;
ALTER TABLE payments DROP COLUMN recovery_park_reason, DROP COLUMN recovery_parked_at, DROP COLUMN recovery_next_at, DROP COLUMN recovery_attempts;
