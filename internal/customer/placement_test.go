package customer_test

import (
	"strconv"
	"testing"

	"github.com/payonce/payonce/internal/customer"
)

// TestPartitionNamesRoundTrip: every partition's name reads back as its
// number, and nothing else does (a customer lock, a number out of range, a
// number written two ways).
func TestPartitionNamesRoundTrip(t *testing.T) {
	for p := range customer.Partitions {
		if n, ok := customer.PartitionNumber(customer.PartitionName(p)); !ok || n != p {
			t.Fatalf("partition %d reads back as %d, %v", p, n, ok)
		}
	}
	for _, name := range []string{"customer:demo:alice", "payments-partition-64", "payments-partition--1",
		"payments-partition-07", "payments-partition-", "payments:payments-partition-3"} {
		if n, ok := customer.PartitionNumber(name); ok {
			t.Fatalf("%q read as partition %d", name, n)
		}
	}
}

// TestCustomersOfTwoCallersArePlacedApart: the same id of two callers is
// two customers, with two keys and two locks, and every customer's
// partition name is a partition's.
func TestCustomersOfTwoCallersArePlacedApart(t *testing.T) {
	if customer.Key("demo", "alice") == customer.Key("demo2", "alice") || customer.Lock("demo", "alice") != "customer:demo:alice" {
		t.Fatalf("keys %q %q, lock %q", customer.Key("demo", "alice"), customer.Key("demo2", "alice"), customer.Lock("demo", "alice"))
	}
	seen := map[int]bool{}
	for i := range 1000 {
		name := customer.PartitionNameOf("demo", "c"+strconv.Itoa(i))
		p, ok := customer.PartitionNumber(name)
		if !ok || p != customer.PartitionOf(customer.Lock("demo", "c"+strconv.Itoa(i))) {
			t.Fatalf("customer c%d: partition name %q", i, name)
		}
		seen[p] = true
	}
	if len(seen) != customer.Partitions {
		t.Fatalf("1000 customers fell into %d of %d partitions", len(seen), customer.Partitions)
	}
}
