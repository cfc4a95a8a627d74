package envconfig_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/internal/envconfig"
)

func TestReader(t *testing.T) {
	env := map[string]string{
		"NAME": " orders-1 ", "N": "3", "BAD_N": "three", "TTL": "5s", "ZERO_TTL": "0s",
		"ON": "true", "PEERS": "a, b,,c ",
	}
	r := envconfig.New(func(k string) string { return env[k] })
	if got := r.String("NAME", "x"); got != "orders-1" {
		t.Errorf("String = %q", got)
	}
	if got := r.String("UNSET", "def"); got != "def" {
		t.Errorf("String default = %q", got)
	}
	if got := r.Int("N", 1); got != 3 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Duration("TTL", time.Second); got != 5*time.Second {
		t.Errorf("Duration = %v", got)
	}
	if got := r.Bool("ON", false); !got {
		t.Error("Bool = false")
	}
	if got := r.List("PEERS", nil); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("no bad variable read yet, got %v", err)
	}
	r.Int("BAD_N", 1)
	r.Duration("ZERO_TTL", time.Second)
	r.Required("MISSING")
	err := r.Err()
	if err == nil {
		t.Fatal("bad variables accepted")
	}
	for _, name := range []string{"BAD_N", "ZERO_TTL", "MISSING"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}
}

func TestFileVariables(t *testing.T) {
	dir := t.TempDir()
	secret := dir + "/orders_db_password"
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PASSWORD_FILE": secret, "BOTH": "x", "BOTH_FILE": secret, "GONE_FILE": dir + "/missing"}
	r := envconfig.New(func(k string) string { return env[k] })
	if got := r.Required("PASSWORD"); got != "s3cret" {
		t.Errorf("PASSWORD from its file = %q", got)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	r.String("BOTH", "")
	r.String("GONE", "")
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "BOTH and BOTH_FILE") || !strings.Contains(err.Error(), "GONE_FILE") {
		t.Fatalf("errors = %v, want both-set and unreadable-file errors", err)
	}
}
