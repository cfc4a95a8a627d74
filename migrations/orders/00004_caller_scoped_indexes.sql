-- Every read of an order is scoped to its caller (customers are a
-- per-caller namespace), so the list index leads with the caller: a
-- caller's customer list is one index range, and another caller's rows are
-- never even visited.

-- +goose Up
CREATE INDEX orders_by_caller_customer ON orders (caller, customer_id, created_at DESC, id DESC);
DROP INDEX orders_by_customer;

-- +goose Down
CREATE INDEX orders_by_customer ON orders (customer_id, created_at DESC, id DESC);
DROP INDEX orders_by_caller_customer;
