package coordinator

import "github.com/payonce/payonce/internal/identity"

// LockName is the coordinator lock that guards the payments resource
// (payments.CustomerLock, payments.PartitionName): the resource in payments'
// namespace, "payments:<resource>". The coordinator lets a service's
// identity use only the locks of its own namespace, so no other service
// can take, queue for or fence a payments lock.
//
// Only the coordinator's name carries the namespace. The resource keeps its
// name everywhere else: on the ring, in PartitionOf's hash and, above all,
// as the key of its fence row in PostgreSQL. An instance still on the old
// lock name (during a rolling upgrade) therefore fences on the very row a
// new one does, and the coordinator's tokens order grants of both names, so
// whichever was granted later fences the other out (docs/coordinator.md,
// "Lock namespaces").
func LockName(resource string) string { return identity.Payments + ":" + resource }
