#!/bin/bash
# One login role per service, owning only its own database, and a role for
# the migrate job (docs/adr/0041-database-roles.md). Runs once, when the
# postgres container starts with an empty data volume; cmd/migrate then
# creates the tables. The passwords come from the files compose mounts as
# secrets (/run/secrets/...), never from the compose file.
#
# The statements are internal/localpg's ProvisionStatements, which the dev
# stack and the tests run; tests/integration's TestComposeRolesScript runs
# this very script against a real server and checks that they match.
set -eu

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
	-v orders_password="$(cat "$ORDERS_DB_PASSWORD_FILE")" \
	-v payments_password="$(cat "$PAYMENTS_DB_PASSWORD_FILE")" \
	-v migrate_password="$(cat "$MIGRATE_DB_PASSWORD_FILE")" <<'SQL'
CREATE ROLE "orders" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'orders_password';
CREATE DATABASE "orders" OWNER "orders";
REVOKE ALL ON DATABASE "orders" FROM PUBLIC;
CREATE ROLE "payments" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'payments_password';
CREATE DATABASE "payments" OWNER "payments";
REVOKE ALL ON DATABASE "payments" FROM PUBLIC;
CREATE ROLE migrate LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'migrate_password';
GRANT "orders" TO migrate;
ALTER ROLE migrate IN DATABASE "orders" SET role = 'orders';
GRANT "payments" TO migrate;
ALTER ROLE migrate IN DATABASE "payments" SET role = 'payments';
SQL
