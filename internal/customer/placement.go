package customer

import (
	"strconv"
	"strings"

	"github.com/payonce/payonce/pkg/ring"
)

// Where a caller's customer lives. Orders, payments and the console all
// place customers, and they must agree to the byte: the console names the
// instance that serves a customer by computing what the services compute,
// so the rule lives here once and the services' own names for it
// (orders.CustomerKey, payments.CustomerLock, payments.PartitionOf, ...)
// are these functions.

// Key names caller's customer id wherever one name is needed: customers are
// a per-caller namespace, so `alice` of two callers are two customers, with
// two ring places and two locks. Callers never contain ":"
// (internal/apikey), so the name is unambiguous. Orders places this key on
// its ring.
func Key(caller, id string) string { return caller + ":" + id }

// Lock names the lock (and, under the per-key design, the fence resource)
// that serialises the charges of caller's customer id:
// "customer:<caller>:<id>".
func Lock(caller, id string) string { return "customer:" + Key(caller, id) }

// Partitions is the number of partitions payments spreads customers over
// under the partition design (ADR 0070). A customer's partition is a pure
// function of its lock name and this number, and the partition's fence row
// is where every write for the customer is fenced: changing the number
// moves customers between fence rows, so it must never change while two
// instances may disagree about it (stop every instance to change it).
const Partitions = 64

// partitionPrefix starts every partition's name: the lock the owner
// leases, the fence row it claims, and the key placed on the ring.
const partitionPrefix = "payments-partition-"

// PartitionOf returns the partition of the customer whose lock is
// customerLock (Lock).
func PartitionOf(customerLock string) int { return int(ring.Hash(customerLock) % Partitions) }

// PartitionName names partition p: its coordinator lock, its fence row and
// its place on payments' ring. The ring owner of this name owns the
// partition.
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

// PartitionNameOf is the name of the partition caller's customer id
// belongs to: the key payments places on its ring under the partition
// design.
func PartitionNameOf(caller, id string) string {
	return PartitionName(PartitionOf(Lock(caller, id)))
}
