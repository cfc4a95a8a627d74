-- Every read of a payment is scoped to its caller (customers are a
-- per-caller namespace), so the list index leads with the caller: a
-- caller's customer list is one index range, and another caller's rows are
-- never even visited.

-- +goose Up
CREATE INDEX payments_by_caller_customer ON payments (caller, customer_id, created_at DESC, id DESC);
DROP INDEX payments_by_customer;

-- +goose Down
CREATE INDEX payments_by_customer ON payments (customer_id, created_at DESC, id DESC);
DROP INDEX payments_by_caller_customer;
