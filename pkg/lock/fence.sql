-- The fence: the highest fencing token each resource has seen. A write made
-- under a lock first moves its resource's token up (or keeps it); a lower
-- token means the writer's lease ended and someone newer has written.
-- Idempotent, so every service's migrations can include it as is.
CREATE TABLE IF NOT EXISTS fence_tokens (
    resource   text        PRIMARY KEY,
    token      bigint      NOT NULL CHECK (token > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
