package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/testenv"
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
	if !strings.Contains(out.String(), "orders: applied 1") || !strings.Contains(out.String(), "payments: applied 1") {
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
	if !strings.HasPrefix(out.String(), "orders: version 1 of 1") {
		t.Fatalf("version output %q", out.String())
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
