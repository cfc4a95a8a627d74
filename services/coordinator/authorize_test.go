package coordinator

import (
	"context"
	"testing"
)

// TestLockNamespaceIsThePartBeforeTheFirstColon: the namespace rule's
// edges. A service whose name starts with another's ("payments-v2") has a
// namespace of its own, and a name with no ":" belongs to no service.
func TestLockNamespaceIsThePartBeforeTheFirstColon(t *testing.T) {
	payments1 := Caller{Service: "payments", Instance: "payments-1"}
	for _, tc := range []struct {
		name, namespace string
		paymentsMay     bool
	}{
		{"payments:customer:shop:alice", "payments", true},
		{"payments:payments-partition-3", "payments", true},
		{"payments:", "payments", true},
		{"payments-partition-3", "", false},
		{"customer:shop:alice", "customer", false},
		{"payments-v2:x", "payments-v2", false},
		{"orders:outbox-relay", "orders", false},
		{":payments", "", false},
	} {
		if got := LockNamespace(tc.name); got != tc.namespace {
			t.Errorf("LockNamespace(%q) = %q, want %q", tc.name, got, tc.namespace)
		}
		p := DefaultPolicy()
		if err := p.lock(payments1, tc.name); (err == nil) != tc.paymentsMay {
			t.Errorf("payments-1 may use %q: %v, want %v", tc.name, err, tc.paymentsMay)
		}
		if p.SeesLock(payments1, tc.name) != tc.paymentsMay {
			t.Errorf("payments-1 sees %q: want %v", tc.name, tc.paymentsMay)
		}
		for _, c := range []Caller{{Service: Admin, Instance: "cli"}, {Service: Console, Instance: "console"}} {
			if !p.SeesLock(c, tc.name) {
				t.Errorf("%s does not see %q", c, tc.name)
			}
		}
		if err := p.lock(Caller{Service: Admin, Instance: "cli"}, tc.name); err != nil {
			t.Errorf("the operator may not use %q: %v", tc.name, err)
		}
		if err := p.lock(Caller{Service: Console, Instance: "console"}, tc.name); err == nil && tc.namespace != Console {
			t.Errorf("the console may use %q", tc.name)
		}
	}
}

// TestWithoutTLSNoNameIsChecked: a coordinator run without TLS has no
// identities, so it checks no namespaces and shows every lock, as before.
func TestWithoutTLSNoNameIsChecked(t *testing.T) {
	var p Policy
	if err := p.lockAccess(context.Background(), "anything"); err != nil {
		t.Fatal(err)
	}
	if !p.SeesLock(Caller{}, "anything") {
		t.Fatal("a plain coordinator hides a lock")
	}
	if DefaultPolicy().SeesLock(Caller{}, "payments:x") {
		t.Fatal("a TLS coordinator shows a lock to nobody in particular")
	}
	if err := DefaultPolicy().lockAccess(context.Background(), "payments:x"); err == nil {
		t.Fatal("a TLS coordinator let a request with no identity use a lock")
	}
}
