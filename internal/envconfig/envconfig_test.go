package envconfig_test

import (
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
