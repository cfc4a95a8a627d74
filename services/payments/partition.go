package payments

import "github.com/payonce/payonce/internal/customer"

// Partitions is the number of partitions customers are spread over under
// the partition design (ADR 0070). A customer's partition is a pure function
// of its lock name and this number, and the partition's fence row is where
// every write for the customer is fenced: changing the number moves
// customers between fence rows, so it must never change while two
// instances may disagree about it (stop every instance to change it).
//
// The rule itself lives in internal/customer, which the console shares, so
// the owner the console names is the one payments routes to.
const Partitions = customer.Partitions

// PartitionOf returns the partition of the customer whose lock is
// customerLock (CustomerLock).
func PartitionOf(customerLock string) int { return customer.PartitionOf(customerLock) }

// PartitionName names partition p: its coordinator lock, its fence row and
// its place on the ring. The ring owner of this name owns the partition.
func PartitionName(p int) string { return customer.PartitionName(p) }

// PartitionNumber is PartitionName's inverse; ok is false for a name that
// is not a partition's.
func PartitionNumber(name string) (p int, ok bool) { return customer.PartitionNumber(name) }

// CustomerLock names the lock (and, under the per-key design, the fence
// resource) that serialises the charges of caller's customer customerID.
func CustomerLock(caller, customerID string) string { return customer.Lock(caller, customerID) }

// CustomerPartitionName is the name of the partition caller's customer
// customerID belongs to: the ring key the partition design routes by.
func CustomerPartitionName(caller, customerID string) string {
	return customer.PartitionNameOf(caller, customerID)
}
