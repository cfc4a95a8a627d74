// Package http exposes the orders service over REST/JSON with go-kit.
// Requests about a customer are routed to the instance that owns the
// customer on the ring (internal/partition); every POST is idempotent
// (pkg/idempotency), and the caller's Idempotency-Key names the order.
package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/internal/quota"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/orders"
)

// Endpoints are the orders service's operations as go-kit endpoints.
type Endpoints struct {
	CreateOrder    endpoint.Endpoint
	GetOrder       endpoint.Endpoint
	CustomerOrders endpoint.Endpoint
	CancelOrder    endpoint.Endpoint
}

type createOrderRequest struct {
	caller string
	orders.CreateOrderRequest
}

// idRequest names one of the caller's orders.
type idRequest struct {
	caller string
	id     string
}

type customerOrdersRequest struct {
	caller     string
	customerID string
	page       orders.Page
}

// MakeEndpoints builds the endpoints on svc, each wrapped by mw(name).
func MakeEndpoints(svc orders.Service, mw func(name string) endpoint.Middleware) Endpoints {
	return Endpoints{
		CreateOrder: mw("create_order")(func(ctx context.Context, req any) (any, error) {
			r := req.(createOrderRequest)
			o, err := svc.CreateOrder(ctx, r.caller, r.CreateOrderRequest)
			if err != nil {
				return nil, err
			}
			return httpkit.Created{Body: o, Location: "/v1/orders/" + o.ID}, nil
		}),
		GetOrder: mw("get_order")(func(ctx context.Context, req any) (any, error) {
			r := req.(idRequest)
			return svc.Order(ctx, r.caller, r.id)
		}),
		CustomerOrders: mw("customer_orders")(func(ctx context.Context, req any) (any, error) {
			r := req.(customerOrdersRequest)
			return svc.CustomerOrders(ctx, r.caller, r.customerID, r.page)
		}),
		CancelOrder: mw("cancel_order")(func(ctx context.Context, req any) (any, error) {
			r := req.(idRequest)
			return svc.CancelOrder(ctx, r.caller, r.id)
		}),
	}
}

// NewHandler routes the orders API: authentication, then ownership
// routing, then idempotency, then the go-kit server.
// limits, when not nil, applies the callers' quotas before anything else
// (routing, idempotency), so a refused request changes nothing.
func NewHandler(e Endpoints, keys apikey.Keys, idem *idempotency.Middleware, parts partition.Router, limits *quota.Limiter, logger *slog.Logger) http.Handler {
	opts := httpkit.ServerOptions(logger)
	server := func(ep endpoint.Endpoint, dec kithttp.DecodeRequestFunc) http.Handler {
		return kithttp.NewServer(ep, dec, httpkit.EncodeJSON, opts...)
	}
	mux := httpkit.NewMux()
	mux.Handle("POST /v1/orders", parts.Wrap(customerInBody, idem.Wrap(server(e.CreateOrder, decodeCreateOrder))))
	mux.Handle("GET /v1/orders/{id}", server(e.GetOrder, decodeID))
	mux.Handle("POST /v1/orders/{id}/cancel", idem.Wrap(server(e.CancelOrder, decodeID)))
	mux.Handle("GET /v1/customers/{id}/orders", parts.Wrap(customerInPath, server(e.CustomerOrders, decodeCustomerOrders)))
	var h http.Handler = mux
	if limits != nil {
		h = limits.Wrap(mux)
	}
	return keys.Authenticate(h)
}

// customerInBody is the ring key of a create: the caller's customer.
func customerInBody(r *http.Request, body []byte) (string, bool) {
	var b struct {
		CustomerID string `json:"customer_id"`
	}
	if json.Unmarshal(body, &b) != nil || b.CustomerID == "" {
		return "", false
	}
	return ringKey(r, b.CustomerID)
}

func customerInPath(r *http.Request, _ []byte) (string, bool) {
	return ringKey(r, r.PathValue("id"))
}

// ringKey places a customer on the ring. Customers are a per-caller
// namespace, so the key is the caller's customer: `alice` of two callers
// are two customers that may live on different instances.
func ringKey(r *http.Request, customerID string) (string, bool) {
	caller, ok := apikey.Caller(r.Context())
	if !ok || customerID == "" {
		return "", false
	}
	return orders.CustomerKey(caller, customerID), true
}

func decodeCreateOrder(ctx context.Context, r *http.Request) (any, error) {
	key := idempotency.FromContext(ctx)
	if key == nil {
		return nil, errs.Wrap(errs.Internal, "", errors.New("idempotent route reached without an idempotency key"))
	}
	body, err := decodeOrderBody(r)
	if err != nil {
		return nil, err
	}
	body.ID = orders.OrderIDFor(key.Scope(), key.Value())
	return createOrderRequest{caller: key.Scope(), CreateOrderRequest: body}, nil
}

// decodeOrderBody reads the JSON body of POST /v1/orders.
func decodeOrderBody(r *http.Request) (orders.CreateOrderRequest, error) {
	var body orders.CreateOrderRequest
	err := httpkit.DecodeJSON(r, &body)
	return body, err
}

// callerOf returns the authenticated caller; every route sits behind
// apikey.Authenticate, so its absence is a wiring bug.
func callerOf(ctx context.Context) (string, error) {
	caller, ok := apikey.Caller(ctx)
	if !ok {
		return "", errs.Wrap(errs.Internal, "", errors.New("route reached without an authenticated caller"))
	}
	return caller, nil
}

func decodeID(ctx context.Context, r *http.Request) (any, error) {
	caller, err := callerOf(ctx)
	return idRequest{caller: caller, id: r.PathValue("id")}, err
}

func decodeCustomerOrders(ctx context.Context, r *http.Request) (any, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	limit, cursor, err := httpkit.PageQuery(r)
	return customerOrdersRequest{caller: caller, customerID: r.PathValue("id"), page: orders.Page{Limit: limit, Cursor: cursor}}, err
}
