package payments

import (
	"strconv"
	"strings"

	"github.com/payonce/payonce/pkg/ring"
)

// Partitions is the number of partitions customers are spread over under
// the partition design (ADR 0070). A customer's partition is a pure function
// of its lock name and this number, and the partition's fence row is where
// every write for the customer is fenced: changing the number moves
// customers between fence rows, so it must never change while two
// instances may disagree about it (stop every instance to change it).
const Partitions = 64

// partitionPrefix starts every partition's name: the lock the owner
// leases, the fence row it claims, and the key placed on the ring.
const partitionPrefix = "payments-partition-"

// PartitionOf returns the partition of the customer whose lock is
// customerLock (CustomerLock).
func PartitionOf(customerLock string) int { return int(ring.Hash(customerLock) % Partitions) }

// PartitionName names partition p: its coordinator lock, its fence row and
// its place on the ring. The ring owner of this name owns the partition.
func PartitionName(p int) string { return partitionPrefix + strconv.Itoa(p) }

// PartitionNumber is PartitionName's inverse; ok is false for a name that
// is not a partition's.
func PartitionNumber(name string) (p int, ok bool) {
	rest, found := strings.CutPrefix(name, partitionPrefix)
	if !found {
		return 0, false
	}
	p, err := strconv.Atoi(rest)
	if err != nil || p < 0 || p >= Partitions || strconv.Itoa(p) != rest {
		return 0, false
	}
	return p, true
}

// CustomerLock names the lock (and, under the per-key design, the fence
// resource) that serialises the charges of caller's customer customerID.
func CustomerLock(caller, customerID string) string {
	return "customer:" + CustomerKey(caller, customerID)
}

// CustomerPartitionName is the name of the partition caller's customer
// customerID belongs to: the ring key the partition design routes by.
func CustomerPartitionName(caller, customerID string) string {
	return PartitionName(PartitionOf(CustomerLock(caller, customerID)))
}
