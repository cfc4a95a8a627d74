package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/migrations"
)

// The two ways roles are made: Go for the dev stack and the tests, the
// shell script for the compose postgres container. Both must give the same
// isolation, so both are attacked the same way.
func TestDatabaseRolesIsolateServices(t *testing.T) {
	for _, provision := range []struct {
		name string
		run  func(t *testing.T, c *localpg.Cluster, roles localpg.Roles)
	}{
		{"localpg.Provision", func(t *testing.T, c *localpg.Cluster, roles localpg.Roles) {
			if err := localpg.Provision(context.Background(), c.URL("postgres"), migrations.Services(), roles); err != nil {
				t.Fatal(err)
			}
		}},
		{"deploy/postgres/initdb/10-roles.sh", runComposeRolesScript},
	} {
		t.Run(provision.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c, err := localpg.Start(ctx, localpg.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Stop() })
			roles := localpg.Roles{Services: map[string]string{}}
			for _, s := range append(migrations.Services(), localpg.MigrateRole) {
				pw, err := localpg.RandomPassword()
				if err != nil {
					t.Fatal(err)
				}
				if s == localpg.MigrateRole {
					roles.Migrate = pw
				} else {
					roles.Services[s] = pw
				}
			}
			provision.run(t, c, roles)
			attackRoles(ctx, t, c, roles)
		})
	}
}

func roleURL(c *localpg.Cluster, role, password, database string) string {
	return fmt.Sprintf("postgres://%s:%s@127.0.0.1:%d/%s?sslmode=disable", role, password, c.Port(), database)
}

func attackRoles(ctx context.Context, t *testing.T, c *localpg.Cluster, roles localpg.Roles) {
	// The migrate role migrates each database, and the tables it makes
	// belong to the service, which can use them.
	for _, s := range migrations.Services() {
		if _, err := migrations.Up(ctx, roleURL(c, localpg.MigrateRole, roles.Migrate, s), s); err != nil {
			t.Fatalf("migrate %s as the migrate role: %v", s, err)
		}
		conn := connect(ctx, t, roleURL(c, s, roles.Services[s], s))
		var owner string
		if err := conn.QueryRow(ctx, `SELECT tableowner FROM pg_tables WHERE tablename = 'outbox'`).Scan(&owner); err != nil || owner != s {
			t.Fatalf("%s's outbox table owned by %q (%v), want %q", s, owner, err, s)
		}
		if _, err := conn.Exec(ctx, `SELECT count(*) FROM outbox`); err != nil {
			t.Fatalf("%s cannot read its own outbox: %v", s, err)
		}
		var super, createRole, createDB bool
		if err := conn.QueryRow(ctx, `SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user`).Scan(&super, &createRole, &createDB); err != nil {
			t.Fatal(err)
		}
		if super || createRole || createDB {
			t.Fatalf("%s: superuser=%v createrole=%v createdb=%v, want none", s, super, createRole, createDB)
		}
	}

	// orders cannot reach payments' data, nor payments orders'.
	for _, pair := range [][2]string{{"orders", "payments"}, {"payments", "orders"}} {
		role, other := pair[0], pair[1]
		_, err := pgx.Connect(ctx, roleURL(c, role, roles.Services[role], other))
		wantCode(t, err, "42501", role+" connecting to the "+other+" database")

		conn := connect(ctx, t, roleURL(c, role, roles.Services[role], role))
		_, err = conn.Exec(ctx, "SET ROLE "+other)
		wantCode(t, err, "42501", role+" becoming "+other)
	}

	// No service role, and not the migrate role, can make roles (which
	// would let it grant itself the other database) or databases.
	for role, pw := range map[string]string{"orders": roles.Services["orders"], "payments": roles.Services["payments"], localpg.MigrateRole: roles.Migrate} {
		db := role
		if role == localpg.MigrateRole {
			db = "orders"
		}
		conn := connect(ctx, t, roleURL(c, role, pw, db))
		_, err := conn.Exec(ctx, "CREATE ROLE intruder LOGIN SUPERUSER")
		wantCode(t, err, "42501", role+" creating a role")
		_, err = conn.Exec(ctx, "CREATE DATABASE intruder")
		wantCode(t, err, "42501", role+" creating a database")
	}

	// Passwords are checked: a wrong one, or none, is refused.
	_, err := pgx.Connect(ctx, roleURL(c, "orders", "wrong-password", "orders"))
	wantCode(t, err, "28P01", "orders with a wrong password")
	_, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port()))
	if err == nil {
		t.Fatal("the superuser connected without a password")
	}
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
}

// runComposeRolesScript runs the compose postgres container's init script
// with psql against c, as the container's entrypoint would, passwords in
// files.
func runComposeRolesScript(t *testing.T, c *localpg.Cluster, roles localpg.Roles) {
	bin, err := localpg.FindBinaries()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"PGHOST=127.0.0.1",
		fmt.Sprintf("PGPORT=%d", c.Port()),
		"PGPASSWORD="+superuserPassword(t, c),
		"POSTGRES_USER=postgres",
	)
	for name, pw := range map[string]string{"ORDERS": roles.Services["orders"], "PAYMENTS": roles.Services["payments"], "MIGRATE": roles.Migrate} {
		file := filepath.Join(dir, strings.ToLower(name))
		if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env = append(env, name+"_DB_PASSWORD_FILE="+file)
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "deploy", "postgres", "initdb", "10-roles.sh"))
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("10-roles.sh: %v\n%s", err, out)
	}
}

func superuserPassword(t *testing.T, c *localpg.Cluster) string {
	t.Helper()
	u, err := pgconn.ParseConfig(c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	return u.Password
}
