// Package http exposes the payments service over REST/JSON with go-kit.
// Every route requires an API key; the mutating ones also require an
// Idempotency-Key (pkg/idempotency), whose caller-scoped value names the
// payment or refund the request creates.
package http

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/quota"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/payments"
)

// NewHandler routes the payments API. keys authenticates callers; idem
// makes the POST routes idempotent and must scope keys by apikey.Scope.
// internal, when not nil, serves the instance-to-instance routes. limits,
// when not nil, applies the callers' quotas to the public routes before
// anything else (idempotency included), so a refused request changes
// nothing; peers handing work to each other are not limited. routing, when
// not nil, forwards charges and refunds to their partition's owner (the
// partition design); it sits inside the quota and outside idempotency, so
// the owner holds the key.
func NewHandler(e Endpoints, keys apikey.Keys, idem *idempotency.Middleware, internal http.Handler, limits *quota.Limiter, routing *Routing, logger *slog.Logger) http.Handler {
	opts := httpkit.ServerOptions(logger)
	server := func(ep func(context.Context, any) (any, error), dec kithttp.DecodeRequestFunc) http.Handler {
		return kithttp.NewServer(ep, dec, httpkit.EncodeJSON, opts...)
	}
	limit := func(h http.Handler) http.Handler {
		if limits == nil {
			return h
		}
		return limits.Wrap(h)
	}
	mux := httpkit.NewMux()
	mux.Handle("POST /v1/payments", limit(routing.wrapCreate(idem.Wrap(server(e.CreatePayment, decodeCreatePayment)))))
	mux.Handle("GET /v1/payments/{id}", limit(server(e.GetPayment, decodeID)))
	mux.Handle("GET /v1/customers/{id}/payments", limit(server(e.CustomerPayments, decodeCustomerPayments)))
	mux.Handle("POST /v1/payments/{id}/refunds", limit(routing.wrapRefund(idem.Wrap(server(e.CreateRefund, decodeCreateRefund)))))
	if internal != nil {
		mux.Handle("POST "+PayOrderPath, internal)
		mux.Handle("POST "+RefundOrderPath, internal)
	}
	return keys.Authenticate(mux)
}

func heldKey(ctx context.Context) (*idempotency.Key, error) {
	key := idempotency.FromContext(ctx)
	if key == nil {
		// The route is wrapped by the middleware, so this is a wiring bug.
		return nil, errs.Wrap(errs.Internal, "", errors.New("idempotent route reached without an idempotency key"))
	}
	return key, nil
}

func decodeCreatePayment(ctx context.Context, r *http.Request) (any, error) {
	key, err := heldKey(ctx)
	if err != nil {
		return nil, err
	}
	body, err := decodePaymentBody(r)
	if err != nil {
		return nil, err
	}
	body.ID = payments.PaymentIDFor(key.Scope(), key.Value())
	return createPaymentRequest{caller: key.Scope(), CreatePaymentRequest: body}, nil
}

// decodePaymentBody reads the JSON body of POST /v1/payments.
func decodePaymentBody(r *http.Request) (payments.CreatePaymentRequest, error) {
	var body payments.CreatePaymentRequest
	err := httpkit.DecodeJSON(r, &body)
	return body, err
}

func decodeCreateRefund(ctx context.Context, r *http.Request) (any, error) {
	key, err := heldKey(ctx)
	if err != nil {
		return nil, err
	}
	body, err := decodeRefundBody(r)
	if err != nil {
		return nil, err
	}
	body.ID = payments.RefundIDFor(key.Scope(), key.Value())
	body.PaymentID = r.PathValue("id")
	return createRefundRequest{caller: key.Scope(), RefundRequest: body}, nil
}

// decodeRefundBody reads the JSON body of POST /v1/payments/{id}/refunds.
func decodeRefundBody(r *http.Request) (payments.RefundRequest, error) {
	var body payments.RefundRequest
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

func decodeCustomerPayments(ctx context.Context, r *http.Request) (any, error) {
	caller, err := callerOf(ctx)
	if err != nil {
		return nil, err
	}
	limit, cursor, err := httpkit.PageQuery(r)
	return customerPaymentsRequest{caller: caller, customerID: r.PathValue("id"), page: payments.Page{Limit: limit, Cursor: cursor}}, err
}
