package http

import (
	"context"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/payments"
)

// OrderPaymentPath is the internal route on which the orders service's
// reconciliation sweeper reads the payment of an order (any caller's):
// payments' own record is the source of truth for a charge.
const OrderPaymentPath = "/internal/v1/orders/{order_id}/payment"

// OrdersCaller is the caller the orders service authenticates as; only it
// may use OrderPaymentPath.
const OrdersCaller = "orders"

// orderPaymentBody is the payment with the fields the sweeper checks
// against the order, the caller included.
type orderPaymentBody struct {
	payments.Payment
	Caller string `json:"caller"`
}

// OrderPaymentRoutes routes GET OrderPaymentPath to OrderPaymentHandler
// and everything else to api, so the service mounts it in front of its API.
// It asks its mux for a match without letting it route the rest: a
// catch-all "/" route would set the request's pattern to "/", and otelhttp
// renames the server span after that pattern when the request ends, so
// every payments span was called "/" instead of its route.
func OrderPaymentRoutes(reader payments.OrderPayments, keys apikey.Keys, api http.Handler, opts ...kithttp.ServerOption) http.Handler {
	mux := httpkit.NewMux()
	mux.Handle("GET "+OrderPaymentPath, OrderPaymentHandler(reader, keys, opts...))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// OrderPaymentHandler serves GET OrderPaymentPath behind keys, to the
// OrdersCaller only (anyone else gets 404, as for a route that does not
// exist). A payment that does not exist is 404 no-payment-for-order.
func OrderPaymentHandler(reader payments.OrderPayments, keys apikey.Keys, opts ...kithttp.ServerOption) http.Handler {
	server := kithttp.NewServer(func(ctx context.Context, req any) (any, error) {
		p, err := reader.Of(ctx, req.(string))
		if err != nil {
			return nil, err
		}
		return orderPaymentBody{Payment: p, Caller: p.Caller}, nil
	}, func(_ context.Context, r *http.Request) (any, error) {
		return r.PathValue("order_id"), nil
	}, httpkit.EncodeJSON, opts...)
	return keys.Authenticate(apikey.Only(OrdersCaller, server))
}
