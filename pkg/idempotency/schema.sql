-- Idempotency keys (pkg/idempotency): one row per (caller, key).
--
-- A row is born by the atomic claim of a key, carries the holder's lease and
-- the last recovery point while the request runs, then the stored response
-- for replays until expires_at, and finally survives as a tombstone (no
-- response, just "this key existed") until the cleanup job forgets it, so a
-- retry after retention is refused instead of being executed a second time.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    -- The authenticated caller: keys are unique per caller, never globally,
    -- so one caller can neither see nor collide with another's keys.
    scope            text        NOT NULL,
    key              text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, route, query and canonical JSON body.
    fingerprint      bytea       NOT NULL,
    -- 'started' until the first atomic phase commits, then whatever the
    -- handler names, then 'finished' when the response is stored.
    recovery_point   text        NOT NULL,
    -- The current holder's random id: a phase or completion commits only
    -- while holder is still its own, which fences out a holder whose lease
    -- was taken over.
    holder           uuid,
    -- Lease end, always computed by the database clock. NULL: nobody holds it.
    locked_until     timestamptz,
    response_status  integer,
    response_headers jsonb,
    response_body    bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    -- End of retention: from here on the key is refused, never re-executed.
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
