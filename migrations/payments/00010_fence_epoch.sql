-- The fence orders writes by (cluster epoch, token) and lets an equal token
-- through only for the lease recorded with it (pkg/lock's FenceLease; ADR
-- 0010). Copied from the two ALTERs at the end of pkg/lock/fence.sql.

-- +goose Up
ALTER TABLE fence_tokens ADD COLUMN IF NOT EXISTS epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
ALTER TABLE fence_tokens ADD COLUMN IF NOT EXISTS lease_id text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE fence_tokens DROP COLUMN lease_id;
ALTER TABLE fence_tokens DROP COLUMN epoch;
