package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/membership"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/services/payments"
)

// PayOrderPath is the internal route on which an instance that received
// an orders.created event for a customer it does not own hands it to the
// owner. It requires an API key like every route.
const PayOrderPath = "/internal/v1/order-payments"

// MakePayOrderEndpoint is the endpoint behind PayOrderPath.
func MakePayOrderEndpoint(svc payments.Service, mw endpoint.Middleware) endpoint.Endpoint {
	return mw(func(ctx context.Context, req any) (any, error) {
		return svc.PayOrder(ctx, req.(events.OrderCreatedEvent))
	})
}

// PayOrderHandler serves PayOrderPath.
func PayOrderHandler(e endpoint.Endpoint, opts ...kithttp.ServerOption) http.Handler {
	return eventHandler[events.OrderCreatedEvent](e, opts...)
}

// eventHandler serves a hand-over route whose body is one event of type E,
// decoded strictly like every request body.
func eventHandler[E any](e endpoint.Endpoint, opts ...kithttp.ServerOption) http.Handler {
	return kithttp.NewServer(e, func(_ context.Context, r *http.Request) (any, error) {
		var ev E
		err := httpkit.DecodeJSON(r, &ev)
		return ev, err
	}, httpkit.EncodeJSON, opts...)
}

// RefundOrderPath is the internal route on which an instance that received
// an orders.refund_requested event for a customer it does not own hands it
// to the owner: under partition leases only the owner can write the
// refund, and a redelivered event tends to come back to the same
// instance, so it must be handed on, not retried here.
const RefundOrderPath = "/internal/v1/order-refunds"

// MakeRefundOrderEndpoint is the endpoint behind RefundOrderPath.
func MakeRefundOrderEndpoint(svc payments.Service, mw endpoint.Middleware) endpoint.Endpoint {
	return mw(func(ctx context.Context, req any) (any, error) {
		return svc.RefundOrder(ctx, req.(events.RefundRequestedEvent))
	})
}

// RefundOrderHandler serves RefundOrderPath.
func RefundOrderHandler(e endpoint.Endpoint, opts ...kithttp.ServerOption) http.Handler {
	return eventHandler[events.RefundRequestedEvent](e, opts...)
}

// InternalRoutes serves the two hand-over routes (PayOrderPath and
// RefundOrderPath) on one handler, for NewHandler's internal argument.
func InternalRoutes(payOrder, refundOrder http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+PayOrderPath, payOrder)
	mux.Handle("POST "+RefundOrderPath, refundOrder)
	return mux
}

// OwnerRouter decides ownership from the ring and hands events to owners
// over HTTP (with trace context, through client).
type OwnerRouter struct {
	Members *membership.Membership
	Client  *http.Client
	// APIKey authenticates this instance to its peers.
	APIKey string
	// ByPartition places customers on the ring by their partition's name
	// (the partition design) instead of by their own key.
	ByPartition bool
}

// ringKey is where customerKey's owner is looked up on the ring.
func (o OwnerRouter) ringKey(caller, customerID string) string {
	if o.ByPartition {
		return payments.CustomerPartitionName(caller, customerID)
	}
	return payments.CustomerKey(caller, customerID)
}

// Owns implements nats.Owner.
func (o OwnerRouter) Owns(caller, customerID string) bool {
	return o.Members.Owns(o.ringKey(caller, customerID))
}

// PayAtOwner implements nats.Owner.
func (o OwnerRouter) PayAtOwner(ctx context.Context, ev events.OrderCreatedEvent) (bool, error) {
	return o.atOwner(ctx, ev.Caller, ev.CustomerID, PayOrderPath, "order", ev)
}

// RefundAtOwner implements nats.RefundOwner.
func (o OwnerRouter) RefundAtOwner(ctx context.Context, ev events.RefundRequestedEvent) (bool, error) {
	return o.atOwner(ctx, ev.Caller, ev.CustomerID, RefundOrderPath, "refund", ev)
}

// atOwner posts ev to path on the owner of caller's customer. forwarded is
// false when there is no owner to reach, and the event should then be
// handled here (the fence keeps that safe).
func (o OwnerRouter) atOwner(ctx context.Context, caller, customerID, path, what string, ev any) (forwarded bool, err error) {
	owner, ok := o.Members.Owner(o.ringKey(caller, customerID))
	if !ok || owner.Addr == "" {
		return false, nil
	}
	body, _ := json.Marshal(ev)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(owner.Addr, "/")+path, bytes.NewReader(body))
	if err != nil {
		return false, nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+o.APIKey)
	req.Header.Set(partition.ForwardedHeader, o.Members.Self().Instance)
	resp, err := o.Client.Do(req)
	if err != nil {
		return false, nil // owner unreachable: handle it here, the fence keeps it safe
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2:
		return true, nil
	case resp.StatusCode == http.StatusBadRequest:
		return true, errs.Errorf(errs.Invalid, "owner %s refused the %s: %s", owner.Instance, what, bytes.TrimSpace(data))
	default:
		return true, fmt.Errorf("owner %s: %s: %s", owner.Instance, resp.Status, bytes.TrimSpace(data))
	}
}
