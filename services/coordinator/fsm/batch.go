package fsm

import (
	"fmt"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/services/coordinator"
)

// MaxBatch is the most leases one keepalive-batch may renew. It bounds the
// size of one log entry (about 100 bytes a lease) and the time one Apply
// holds the machine; an instance holding more partitions than this sends
// several batches.
const MaxBatch = 1024

// BatchItem is the outcome of one lease of a keepalive-batch: the renewed
// lease, or why it was not renewed. Items fail independently: a lease that
// expired or moved does not stop its neighbours from being renewed.
type BatchItem struct {
	Lease *coordinator.Lease
	Err   error
}

// ValidateBatch refuses a batch that is empty, too large, names a lock
// twice or carries a malformed reference. A refused batch renews nothing:
// bad input changes nothing, and a client that sends it has a bug worth
// hearing about rather than a half-applied renewal.
func ValidateBatch(refs []LeaseRef) error {
	if len(refs) == 0 {
		return errs.E(errs.Invalid, "a keepalive batch names at least one lease").
			WithFields(errs.FieldError{Field: "leases", Reason: "must not be empty"})
	}
	if len(refs) > MaxBatch {
		return errs.E(errs.Invalid, "keepalive batch too large").
			WithFields(errs.FieldError{Field: "leases", Reason: fmt.Sprintf("at most %d", MaxBatch)})
	}
	seen := make(map[string]bool, len(refs))
	for i, r := range refs {
		field := fmt.Sprintf("leases[%d]", i)
		if f := coordinator.ValidateName(field+".lock", r.Lock); f != nil {
			return errs.E(errs.Invalid, "invalid lock in keepalive batch").WithFields(*f)
		}
		if r.LeaseID == "" || len(r.LeaseID) > 64 {
			return errs.E(errs.Invalid, "invalid lease id in keepalive batch").
				WithFields(errs.FieldError{Field: field + ".lease_id", Reason: "must be 1-64 characters"})
		}
		if seen[r.Lock] {
			return errs.E(errs.Invalid, "a lock appears twice in the keepalive batch").
				WithFields(errs.FieldError{Field: field + ".lock", Reason: "duplicate"})
		}
		seen[r.Lock] = true
	}
	return nil
}

// keepAliveBatch renews every lease of c.Leases as if each were its own
// keepalive entry applied at this index, in the order given. Each item goes
// through keepAlive itself, with c's other fields (the caller's identity
// among them) carried over, so whatever a single keepalive checks (that
// the lease holds the lock, that the caller is its holder) is checked for
// every lease of the batch by the same code, and a batch cannot renew what
// a single keepalive could not.
func (s *state) keepAliveBatch(index uint64, now int64, c Command) Result {
	if err := ValidateBatch(c.Leases); err != nil {
		return Result{Err: err}
	}
	items := make([]BatchItem, len(c.Leases))
	for i, ref := range c.Leases {
		one := c
		one.Op, one.Lock, one.LeaseID, one.Leases = OpKeepAlive, ref.Lock, ref.LeaseID, nil
		r := s.keepAlive(index, now, one)
		items[i] = BatchItem{Lease: r.Lease, Err: r.Err}
	}
	return Result{Batch: items}
}
