package http

import (
	"context"

	"github.com/go-kit/kit/endpoint"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/payments"
)

// Endpoints are the payments service's operations as go-kit endpoints.
type Endpoints struct {
	CreatePayment    endpoint.Endpoint
	GetPayment       endpoint.Endpoint
	CustomerPayments endpoint.Endpoint
	CreateRefund     endpoint.Endpoint
}

type createPaymentRequest struct {
	caller string
	payments.CreatePaymentRequest
}

// idRequest names one of the caller's payments.
type idRequest struct {
	caller string
	id     string
}

type customerPaymentsRequest struct {
	caller     string
	customerID string
	page       payments.Page
}

type createRefundRequest struct {
	caller string
	payments.RefundRequest
}

// MakeEndpoints builds the endpoints on svc, each wrapped by mw(name).
func MakeEndpoints(svc payments.Service, mw func(name string) endpoint.Middleware) Endpoints {
	return Endpoints{
		CreatePayment: mw("create_payment")(func(ctx context.Context, req any) (any, error) {
			r := req.(createPaymentRequest)
			p, err := svc.CreatePayment(ctx, r.caller, r.CreatePaymentRequest)
			if err != nil {
				return nil, err
			}
			return httpkit.Created{Body: p, Location: "/v1/payments/" + p.ID}, nil
		}),
		GetPayment: mw("get_payment")(func(ctx context.Context, req any) (any, error) {
			r := req.(idRequest)
			return svc.Payment(ctx, r.caller, r.id)
		}),
		CustomerPayments: mw("customer_payments")(func(ctx context.Context, req any) (any, error) {
			r := req.(customerPaymentsRequest)
			return svc.CustomerPayments(ctx, r.caller, r.customerID, r.page)
		}),
		CreateRefund: mw("create_refund")(func(ctx context.Context, req any) (any, error) {
			r := req.(createRefundRequest)
			refund, err := svc.RefundPayment(ctx, r.caller, r.RefundRequest)
			if err != nil {
				return nil, err
			}
			return httpkit.Created{Body: refund, Location: "/v1/payments/" + refund.PaymentID + "/refunds/" + refund.ID}, nil
		}),
	}
}
