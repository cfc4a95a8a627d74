package payments

import "github.com/payonce/payonce/internal/errs"

// ErrFenced is returned by fenced store writes whose token is stale: the
// writer's lease ended and a newer holder has written. It is a 503 with
// Retry-After, not a 4xx, because the intent is not refused: the newer
// holder finishes it, and the client's retry replays that result.
var ErrFenced = errs.E(errs.Unavailable, "the customer's lock passed to another worker mid-charge; retry to get the result").
	WithType("lease-lost").WithRetryAfter(1)

// ErrPaymentNotFound is returned for an unknown payment id.
var ErrPaymentNotFound = errs.E(errs.NotFound, "payment not found")

// ErrRefundNotFound is returned for an unknown refund id.
var ErrRefundNotFound = errs.E(errs.NotFound, "refund not found")

// ErrNotRefundable is returned when refunding a payment that did not succeed.
var ErrNotRefundable = errs.E(errs.Conflict, "only a succeeded payment can be refunded").WithType("payment-not-refundable")

// ErrRefundExceedsCaptured is returned when a refund would take the total
// refunded above the captured amount.
var ErrRefundExceedsCaptured = errs.E(errs.Invalid, "refund exceeds the amount left to refund").
	WithType("refund-exceeds-captured").
	WithFields(errs.FieldError{Field: "amount", Reason: "at most the captured amount minus what was already refunded"})

// ErrNotOwner means this instance does not hold a live lease on the
// customer's partition (partition design): the partition belongs to
// another instance, is moving, or this instance lost touch with the
// coordinator. Nothing was written; the request is forwarded to the owner
// where the transport can, and otherwise retried.
var ErrNotOwner = errs.E(errs.Unavailable, "this instance does not hold the customer's partition right now; retry").
	WithType("partition-not-held").WithRetryAfter(1)
