// Package coordinator adapts the coordinator's lock client (pkg/lock) to
// the payments domain's Locker port.
package coordinator

import (
	"context"
	"time"

	"github.com/payonce/payonce/pkg/lock"
	"github.com/payonce/payonce/services/payments"
)

// Locker takes customer locks from the coordinator cluster.
type Locker struct {
	Client *lock.Client
	// Wait is how long Acquire queues behind another holder of the same
	// customer before giving up.
	Wait time.Duration
}

var _ payments.Locker = Locker{}

// Acquire implements payments.Locker: name is the resource, and the
// coordinator lock taken is its LockName.
func (l Locker) Acquire(ctx context.Context, name string, ttl time.Duration) (payments.Lease, error) {
	lease, err := l.Client.Acquire(ctx, LockName(name), ttl, lock.Wait(l.Wait))
	if err != nil {
		return nil, err
	}
	return lease, nil
}
