package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/migrations"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestRun(t *testing.T) {
	ctx := context.Background()
	env := map[string]string{
		"ORDERS_DATABASE_URL":   testenv.NewDatabase(t),
		"PAYMENTS_DATABASE_URL": testenv.NewDatabase(t),
	}
	getenv := func(k string) string { return env[k] }

	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "up"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "orders: applied 1 ") || !strings.Contains(out.String(), "payments: applied 1 ") {
		t.Fatalf("first run output:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "up"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "schema is current") != 2 {
		t.Fatalf("second run should change nothing, output:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"migrate", "version", "orders"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	files, err := fs.Glob(must(migrations.FS("orders")), "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("orders migrations: %v %v", files, err)
	}
	// Versions are the files' numbers, which are not contiguous (each
	// engineer numbers in a range of their own): the newest is the largest.
	latest := 0
	for _, f := range files {
		n, err := strconv.Atoi(strings.SplitN(f, "_", 2)[0])
		if err != nil {
			t.Fatalf("migration %s: no version number", f)
		}
		latest = max(latest, n)
	}
	if want := fmt.Sprintf("orders: version %d of %d\n", latest, latest); out.String() != want {
		t.Fatalf("version output %q, want %q", out.String(), want)
	}

	for name, args := range map[string][]string{
		"unknown command": {"migrate", "sideways"},
		"unknown service": {"migrate", "up", "inventory"},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(ctx, args, getenv, &out); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	t.Run("missing database URL", func(t *testing.T) {
		err := run(ctx, []string{"migrate", "up", "orders"}, func(string) string { return "" }, &out)
		if err == nil || !strings.Contains(err.Error(), "ORDERS_DATABASE_URL") {
			t.Fatalf("err = %v, want one naming ORDERS_DATABASE_URL", err)
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The compose job names the role in the URL and reads its password from a
// secret file; a wrong password is refused by the server.
func TestRunReadsThePasswordFromAFile(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(testenv.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	password, _ := u.User.Password()
	u.User = url.User(u.User.Username())
	file := filepath.Join(t.TempDir(), "orders_db_password")
	env := map[string]string{"ORDERS_DATABASE_URL": u.String(), "ORDERS_DATABASE_PASSWORD_FILE": file}
	getenv := func(k string) string { return env[k] }

	if err := os.WriteFile(file, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(ctx, []string{"migrate", "up", "orders"}, getenv, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "password") {
		t.Fatalf("wrong password: err = %v, want an authentication failure", err)
	}
	if err := os.WriteFile(file, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate", "up", "orders"}, getenv, &out); err != nil {
		t.Fatalf("password from file: %v", err)
	}
	if !strings.Contains(out.String(), "orders: applied") {
		t.Fatalf("output:\n%s", out.String())
	}
}
