package coordinator

import "context"

// LeaseRef names one lease to renew in a batch: the lock it holds and its id,
// exactly as a single keepalive names them.
type LeaseRef struct {
	Lock    string
	LeaseID string
}

// Renewal is the outcome of one lease of a batched keepalive: the renewed
// lease, or the error a single keepalive of it would have got (the lease
// expired, was released, or is not the caller's). Leases of one batch fail
// independently.
type Renewal struct {
	Lease *Lease
	Err   error
}

// BatchRenewer renews many leases in one write. It is what a holder of many
// partition leases uses: one request and one Raft entry per renewal
// interval, whatever the number of partitions (ADR 0070).
type BatchRenewer interface {
	// KeepAliveBatch renews every lease of refs in one log entry and
	// reports each outcome in the order of refs. A malformed batch (empty,
	// too large, a lock named twice) is refused whole and renews nothing.
	KeepAliveBatch(ctx context.Context, refs []LeaseRef) ([]Renewal, error)
}
