-- The pgbench floor (bench/payments): the commits one new payment makes on
-- the request path under the partition design, with the statements the
-- payments service sends, on the same database, with nothing else around
-- them (no HTTP, no Go, no bank, no coordinator). One run of this script is
-- one payment: three commits, as in a payment's trace.
--   1. pkg/idempotency Store.Begin: read the key, claim it (autocommit).
--   2. Store.CreatePayment: phase "authorizing" (key row FOR UPDATE, the
--      partition's fence row FOR SHARE (CheckFence), insert the payment
--      already authorizing, read it back, advance the key). The lease was
--      checked in the process before it, so the intent and the move to
--      authorizing are one commit.
--   3. Store.FinishPayment: the final phase "settled", fenced, with the
--      outbox row, and Key.Complete's stored response in the same
--      transaction (idempotency.FinalTx).
-- Left out: the outbox relay's claim and mark, which run off the request
-- path and batch under load (leaving them out makes the floor higher).
\set n random(1, 9000000000000000000)
\set customer random(0, 999)
\set partition random(0, 63)
SELECT fingerprint, coalesce(locked_until > now(), false), expires_at <= now(), expires_at,
       response_status, response_headers, response_body
  FROM idempotency_keys WHERE scope = 'pgbench' AND key = 'k-' || :n;
INSERT INTO idempotency_keys AS k (scope, key, fingerprint, recovery_point, holder, locked_until, expires_at)
VALUES ('pgbench', 'k-' || :n, sha256(('k-' || :n)::bytea), 'started', md5('h-' || :n)::uuid,
        now() + interval '30 seconds', now() + interval '24 hours')
ON CONFLICT (scope, key) DO UPDATE SET holder = EXCLUDED.holder, locked_until = EXCLUDED.locked_until
 WHERE k.fingerprint = EXCLUDED.fingerprint AND k.response_status IS NULL
   AND (k.locked_until IS NULL OR k.locked_until <= now()) AND k.expires_at > now()
RETURNING k.recovery_point, k.expires_at, k.xmax = 0;
BEGIN;
SELECT recovery_point FROM idempotency_keys WHERE scope = 'pgbench' AND key = 'k-' || :n AND holder = md5('h-' || :n)::uuid FOR UPDATE;
SELECT 1 FROM fence_tokens WHERE resource = 'pgbench-partition-' || :partition AND epoch = 1 AND token = 1 AND lease_id = 'pgbench' FOR SHARE;
INSERT INTO payments (id, caller, customer_id, order_id, amount, currency, card, status, bank_key, fence_token)
VALUES (md5('p-' || :n)::uuid, 'pgbench', 'cust-' || :customer, NULL, 1250, 'EUR', '4242424242424242', 'authorizing', 'payment:' || :n, 1)
ON CONFLICT DO NOTHING;
SELECT id::text, caller, customer_id, coalesce(order_id, ''), amount, currency, card, status, bank_key,
       coalesce(bank_charge_id, ''), coalesce(failure_reason, ''), refunded_amount, created_at, updated_at
  FROM payments WHERE id = md5('p-' || :n)::uuid;
UPDATE idempotency_keys SET recovery_point = 'authorizing', locked_until = now() + interval '30 seconds'
 WHERE scope = 'pgbench' AND key = 'k-' || :n AND holder = md5('h-' || :n)::uuid;
COMMIT;
BEGIN;
SELECT recovery_point FROM idempotency_keys WHERE scope = 'pgbench' AND key = 'k-' || :n AND holder = md5('h-' || :n)::uuid FOR UPDATE;
SELECT 1 FROM fence_tokens WHERE resource = 'pgbench-partition-' || :partition AND epoch = 1 AND token = 1 AND lease_id = 'pgbench' FOR SHARE;
UPDATE payments SET status = 'succeeded', bank_charge_id = 'ch-' || :n, failure_reason = NULL, fence_token = 1, updated_at = now()
 WHERE id = md5('p-' || :n)::uuid AND status IN ('pending', 'authorizing')
RETURNING id::text, caller, customer_id, coalesce(order_id, ''), amount, currency, card, status, bank_key,
          coalesce(bank_charge_id, ''), coalesce(failure_reason, ''), refunded_amount, created_at, updated_at;
INSERT INTO outbox (id, subject, payload, headers)
VALUES (md5('e-' || :n)::uuid, 'payments.succeeded',
        jsonb_build_object('event_id', md5('e-' || :n), 'payment_id', md5('p-' || :n), 'caller', 'pgbench',
                           'customer_id', 'cust-' || :customer, 'amount', 1250, 'currency', 'EUR', 'status', 'succeeded',
                           'occurred_at', now(), 'seal', repeat('s', 64)),
        jsonb_build_object('traceparent', '00-' || md5('t-' || :n) || '-' || left(md5('s-' || :n), 16) || '-01'));
UPDATE idempotency_keys SET recovery_point = 'settled', locked_until = now() + interval '30 seconds'
 WHERE scope = 'pgbench' AND key = 'k-' || :n AND holder = md5('h-' || :n)::uuid;
UPDATE idempotency_keys SET recovery_point = 'finished', holder = NULL, locked_until = NULL,
       response_status = 201, response_headers = '{"Content-Type":["application/json"]}',
       response_body = convert_to(repeat('x', 400), 'UTF8'), completed_at = now()
 WHERE scope = 'pgbench' AND key = 'k-' || :n AND holder = md5('h-' || :n)::uuid;
COMMIT;
