package payments

import (
	"context"
	"time"

	"github.com/payonce/payonce/internal/events"
)

// Fence is the fencing token a write is made under, and the resource it
// protects. The store checks it first in the write's transaction: the
// resource's highest (Epoch, Token) must not be above this one, and an
// equal pair passes only for the same LeaseID (docs/fencing-tokens.md).
type Fence struct {
	Resource string
	// Epoch is the coordinator cluster's epoch, fixed at its bootstrap, so
	// a rebuilt cluster's tokens (which start again at 1) still pass.
	Epoch uint64
	Token uint64
	// LeaseID names the grant, so two grants that should never share a
	// token (a cluster that lost a committed grant) cannot both write.
	LeaseID string
	// Claimed says the holder claimed Resource's fence row when it was
	// granted (the partition design): the write checks that the row still
	// names this lease, without raising it, so the partition's writes do
	// not queue on one row (lock.CheckFence). Otherwise the write raises
	// the row itself (lock.FenceLease, the per-key design).
	Claimed bool
}

// fenceOf is the fence for writes to resource under lease. A partition
// lease fences on its partition's row instead of the customer's.
func fenceOf(resource string, lease Lease) Fence {
	if pl, ok := lease.(PartitionLease); ok {
		return Fence{Resource: pl.Partition(), Epoch: lease.Epoch(), Token: lease.Token(), LeaseID: lease.ID(), Claimed: true}
	}
	return Fence{Resource: resource, Epoch: lease.Epoch(), Token: lease.Token(), LeaseID: lease.ID()}
}

// ChargeResult is the bank's final word on a charge.
type ChargeResult struct {
	BankChargeID  string
	Declined      bool
	DeclineReason string
}

// RefundResult is the bank's final word on a refund.
type RefundResult struct {
	BankRefundID string
	Refused      bool
	Reason       string
}

// Store keeps payments and refunds. Every method is one transaction; the
// fenced ones first pass the fence and fail with ErrFenced if the token is
// stale, changing nothing.
type Store interface {
	// CreatePayment inserts p, as it is (the service records a new intent
	// already authorizing), unless a payment with p.ID or p.OrderID exists,
	// and returns the stored payment and whether this call created it. It is
	// fenced like every write of a charge, so the intent and its first
	// step commit together, under the lease.
	CreatePayment(ctx context.Context, p Payment, fence Fence) (Payment, bool, error)
	// Payment returns payment id whoever owns it, for the service's own
	// work (recovery, events); never for answering a caller.
	Payment(ctx context.Context, id string) (Payment, error)
	// CallerPayment returns payment id if caller owns it. Every read the
	// API makes is scoped in SQL, so no code path can forget the check.
	CallerPayment(ctx context.Context, caller, id string) (Payment, error)
	CustomerPayments(ctx context.Context, caller, customerID string, page Page) (PaymentList, error)
	// MarkAuthorizing moves a pending payment to authorizing. A payment
	// already authorizing or final is returned unchanged.
	MarkAuthorizing(ctx context.Context, id string, fence Fence) (Payment, error)
	// FinishPayment records the bank's result and writes the outcome event
	// to the outbox, in one transaction. A final payment is returned unchanged.
	// Behind the API that transaction is the request's last and commits
	// with the stored response, after FinishPayment returns (AfterWrites).
	FinishPayment(ctx context.Context, id string, fence Fence, result ChargeResult, event events.PaymentOutcomeEvent) (Payment, error)
	// UnfinishedPayments lists payments not final whose last change is
	// older than olderThan, by the database clock.
	UnfinishedPayments(ctx context.Context, olderThan time.Duration, limit int) ([]Payment, error)

	// ReserveRefund inserts r and reserves its amount on the payment,
	// unless a refund with r.ID exists (then it is returned). It fails with
	// an Invalid error if the amount exceeds what is left to refund.
	ReserveRefund(ctx context.Context, r Refund, fence Fence) (Refund, error)
	// FinishRefund records the bank's result; a refused refund gives its
	// reservation back.
	FinishRefund(ctx context.Context, id string, fence Fence, result RefundResult) (Refund, error)
	Refund(ctx context.Context, id string) (Refund, error)
	UnfinishedRefunds(ctx context.Context, olderThan time.Duration, limit int) ([]Refund, error)

	// AfterWrites runs fn once the writes made so far under ctx have ended,
	// committed or not: at once, or, when the last of them is a request's
	// final phase still open (FinishPayment, FinishRefund behind the API),
	// right after it commits with the response or rolls back. The service
	// releases the customer's lease through it, so the lease covers its
	// writes until they are durable and no network call runs inside an
	// open transaction.
	AfterWrites(ctx context.Context, fn func())
}

// Locker grants the lease a customer's charge or refund is made under. Two
// designs implement it (ADR 0070): a per-key lock from the coordinator for
// each charge (a Raft round trip each), or a local check of the lease this
// instance holds on the customer's partition plus an in-process lock on the
// customer (no round trip; ErrNotOwner when the partition is not held).
type Locker interface {
	Acquire(ctx context.Context, name string, ttl time.Duration) (Lease, error)
}

// PartitionLease is a Lease on a whole partition of customers: its writes
// are fenced on the partition's row, which the holder claimed when it was
// granted (see Fence.Claimed).
type PartitionLease interface {
	Lease
	// Partition names the partition (its fence row).
	Partition() string
}

// Lease is a held lock.
type Lease interface {
	// Token is the fencing token every write under the lease carries.
	Token() uint64
	// Epoch is the epoch of the cluster that granted the lease.
	Epoch() uint64
	// ID names the grant.
	ID() string
	// Context is cancelled the moment the lease may have been lost.
	Context() context.Context
	Release(ctx context.Context) error
}

// BankCharge is what the bank is asked to capture.
type BankCharge struct {
	Amount    int64
	Currency  string
	Card      string
	Reference string
}

// Bank is the payment provider. Both calls are idempotent on key. An error
// means the outcome is unknown (the call may or may not have taken effect):
// the caller retries later with the same key.
type Bank interface {
	Charge(ctx context.Context, key string, c BankCharge) (ChargeResult, error)
	Refund(ctx context.Context, key, chargeID string, amount int64) (RefundResult, error)
}
