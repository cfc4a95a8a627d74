package http

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/services/payments"
)

// Routing sends a charge or a refund to the instance that owns its
// customer's partition (the partition design, ADR 0070): only that
// instance holds the partition's lease, so only it can charge without a
// coordinator round trip. Under the per-key lock design any instance can
// charge any customer and no Routing is needed.
type Routing struct {
	// Router forwards a request, once, to the owner of its ring key.
	Router partition.Router
	// PaymentCustomer returns the customer id of the caller's payment id,
	// so a refund (whose body names no customer) is routed too; false if
	// there is no such payment (it is then served here, and answers 404).
	PaymentCustomer func(ctx context.Context, caller, paymentID string) (string, bool)
}

// wrapCreate routes POST /v1/payments by the customer in its body.
func (rt *Routing) wrapCreate(next http.Handler) http.Handler {
	if rt == nil {
		return next
	}
	return rt.Router.Wrap(func(r *http.Request, body []byte) (string, bool) {
		var b struct {
			CustomerID string `json:"customer_id"`
		}
		if json.Unmarshal(body, &b) != nil || b.CustomerID == "" {
			return "", false
		}
		return partitionKey(r, b.CustomerID)
	}, next)
}

// wrapRefund routes POST /v1/payments/{id}/refunds by its payment's customer.
func (rt *Routing) wrapRefund(next http.Handler) http.Handler {
	if rt == nil || rt.PaymentCustomer == nil {
		return next
	}
	return rt.Router.Wrap(func(r *http.Request, _ []byte) (string, bool) {
		caller, ok := apikey.Caller(r.Context())
		if !ok {
			return "", false
		}
		customerID, ok := rt.PaymentCustomer(r.Context(), caller, r.PathValue("id"))
		if !ok {
			return "", false
		}
		return partitionKey(r, customerID)
	}, next)
}

// partitionKey is the ring key of the caller's customer: its partition's name.
func partitionKey(r *http.Request, customerID string) (string, bool) {
	caller, ok := apikey.Caller(r.Context())
	if !ok || customerID == "" {
		return "", false
	}
	return payments.CustomerPartitionName(caller, customerID), true
}
