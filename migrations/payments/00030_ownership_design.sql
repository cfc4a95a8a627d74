-- The ownership design every payments instance on this database runs
-- (PAYMENTS_OWNERSHIP, ADR 0070). The two designs fence a charge through
-- different rows of fence_tokens (the customer's under "lock", the
-- partition's under "partition"), so an instance of each, side by side in a
-- rolling upgrade, would both pass their fences and could charge one
-- customer at once. The first instance to start records its design; an
-- instance whose design differs refuses to start (services/payments/postgres
-- PinOwnershipDesign). Switching is a stop-the-fleet change: stop every
-- payments instance, UPDATE this row, start them with the new design.

-- +goose Up
CREATE TABLE ownership_design (
    -- One row at most: the database runs one design.
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    design      text        NOT NULL CHECK (design IN ('partition', 'lock')),
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE ownership_design;
