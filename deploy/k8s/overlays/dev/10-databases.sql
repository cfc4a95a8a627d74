-- One database per service (orders, payments). Runs once, when the
-- postgres container starts with an empty data volume; cmd/migrate then
-- creates the tables.
CREATE DATABASE orders;
CREATE DATABASE payments;
