package localpg

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// writeSuperuserPassword picks the superuser's random password and writes
// it where initdb --pwfile reads it (readable by the server's OS user
// only); the file is removed with the cluster's directory.
func (c *Cluster) writeSuperuserPassword(runAs *osUser) (string, error) {
	pw, err := RandomPassword()
	if err != nil {
		return "", err
	}
	c.password = pw
	file := filepath.Join(c.dir, "superuser-password")
	if err := os.WriteFile(file, []byte(pw+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("superuser password file: %w", err)
	}
	if runAs != nil {
		if err := os.Chown(file, runAs.uid, runAs.gid); err != nil {
			return "", fmt.Errorf("superuser password file: %w", err)
		}
	}
	return file, nil
}

// RandomPassword returns 32 hex characters (128 bits) from crypto/rand.
func RandomPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// MigrateRole is the login role of the migrate job (cmd/migrate).
const MigrateRole = "migrate"

// Roles are the passwords of the login roles Provision creates: one per
// service, named and owning the database of the same name, and the migrate
// role's.
type Roles struct {
	// Services maps each service (orders, payments) to its role's password.
	Services map[string]string
	Migrate  string
}

// ProvisionStatements returns the SQL that gives each service its own
// login role and database: the role owns its database and nothing else, is
// no superuser and can create neither roles nor databases; no other role
// may connect to the database. The migrate role may act as each service
// role, and becomes it on connecting to the service's database, so the
// tables it creates belong to the service (which can then also migrate
// itself, MIGRATE_ON_START). deploy/postgres/initdb/10-roles.sh runs the
// same statements in the compose stack; TestComposeInitScriptMatches keeps
// them equal.
func ProvisionStatements(services []string) []string {
	var stmts []string
	for _, s := range services {
		role := pgx.Identifier{s}.Sanitize()
		stmts = append(stmts,
			fmt.Sprintf("CREATE ROLE %s LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'%s_password'", role, s),
			fmt.Sprintf("CREATE DATABASE %s OWNER %s", role, role),
			fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", role),
		)
	}
	stmts = append(stmts, "CREATE ROLE "+MigrateRole+" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'migrate_password'")
	for _, s := range services {
		role := pgx.Identifier{s}.Sanitize()
		stmts = append(stmts,
			fmt.Sprintf("GRANT %s TO %s", role, MigrateRole),
			fmt.Sprintf("ALTER ROLE %s IN DATABASE %s SET role = '%s'", MigrateRole, role, s),
		)
	}
	return stmts
}

// Provision runs ProvisionStatements on the server adminURL names (a
// superuser), with the passwords in roles.
func Provision(ctx context.Context, adminURL string, services []string, roles Roles) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to provision roles: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	vars := map[string]string{"migrate_password": roles.Migrate}
	for _, s := range services {
		vars[s+"_password"] = roles.Services[s]
	}
	for _, stmt := range ProvisionStatements(services) {
		stmt, err := substitute(stmt, vars)
		if err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("provision: %w", err)
		}
	}
	return nil
}

// substitute replaces psql's :'name' variables with quoted literals, so
// Go and the compose init script (which runs psql) share the statements.
func substitute(stmt string, vars map[string]string) (string, error) {
	for name, value := range vars {
		placeholder := ":'" + name + "'"
		if value == "" && strings.Contains(stmt, placeholder) {
			return "", fmt.Errorf("provision: no password for %s", name)
		}
		stmt = strings.ReplaceAll(stmt, placeholder, "'"+strings.ReplaceAll(value, "'", "''")+"'")
	}
	if strings.Contains(stmt, ":'") {
		return "", fmt.Errorf("provision: unset variable in %q", stmt)
	}
	return stmt, nil
}
