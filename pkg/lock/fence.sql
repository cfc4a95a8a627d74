-- The fence: the highest fencing token each resource has seen. A write made
-- under a lock first moves its resource's token up (or keeps it); a lower
-- token means the writer's lease ended and someone newer has written.
-- Tokens are ordered by (epoch, token): the epoch is fixed when a coordinator
-- cluster is bootstrapped, so a cluster rebuilt from nothing, whose tokens
-- start low again, is not fenced out by the old cluster's. An equal
-- (epoch, token) passes only for the lease recorded with it.
-- Idempotent, so every service's migrations can include it as is.
CREATE TABLE IF NOT EXISTS fence_tokens (
    resource   text        PRIMARY KEY,
    token      bigint      NOT NULL CHECK (token > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE fence_tokens ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE fence_tokens ADD COLUMN IF NOT EXISTS lease_id text NOT NULL DEFAULT '';
