package customer_test

import (
	"strings"
	"testing"

	"github.com/payonce/payonce/internal/customer"
)

func TestValidID(t *testing.T) {
	for _, id := range []string{"alice", "c", "cust-001", "A.b_c-d", strings.Repeat("x", 64), "0"} {
		if !customer.ValidID(id) {
			t.Errorf("%q refused", id)
		}
	}
	for _, id := range []string{"", "alice smith", "a/b", "a:b", "-a", ".a", "_a", "a\x00", "zoë", strings.Repeat("x", 65), "a%2Fb", "a\n"} {
		if customer.ValidID(id) {
			t.Errorf("%q accepted", id)
		}
	}
}

// FuzzCustomerID: whatever the rule accepts is a valid part of a lock
// name (the coordinator's alphabet, no ':'), a single clean URL path
// segment, and at most 64 bytes; and the rule never panics.
func FuzzCustomerID(f *testing.F) {
	for _, s := range []string{"alice", "alice smith", "a/b", "..", "a:b", "\x00", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !customer.ValidID(id) {
			if customer.CheckID("customer_id", id) == nil {
				t.Fatalf("%q refused without a field error", id)
			}
			return
		}
		if len(id) == 0 || len(id) > customer.MaxIDLength || id == "." || id == ".." {
			t.Fatalf("accepted %q", id)
		}
		lock := "customer:" + strings.Repeat("c", 64) + ":" + id
		if len(lock) > 200 {
			t.Fatalf("lock name for %q is %d characters", id, len(lock))
		}
		for _, c := range id {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("accepted %q with %q", id, c)
			}
		}
	})
}
