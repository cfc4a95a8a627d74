package http

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/services/orders"
)

// PaymentsClient reads the payment of an order from the payments service's
// REST API (GET /internal/v1/orders/{order_id}/payment, open to the orders
// caller only, since the payment belongs to the order's caller), for the
// reconciliation sweeper. Orders never reads payments' database: the
// service that owns the data answers for it.
type PaymentsClient struct {
	BaseURL string
	// APIKey authenticates orders to payments.
	APIKey string
	Client *http.Client
}

var _ orders.PaymentReader = PaymentsClient{}

// PaymentOfOrder implements orders.PaymentReader. A 404 is
// orders.ErrNoPayment; any other failure means "cannot tell now".
func (c PaymentsClient) PaymentOfOrder(ctx context.Context, orderID string) (orders.PaymentView, error) {
	id := events.PaymentIDForOrder(orderID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+"/internal/v1/orders/"+url.PathEscape(orderID)+"/payment", nil)
	if err != nil {
		return orders.PaymentView{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	resp, err := c.Client.Do(req)
	if err != nil {
		return orders.PaymentView{}, fmt.Errorf("payments: get payment %s: %w", id, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return orders.PaymentView{}, fmt.Errorf("payments: get payment %s: %w", id, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		// Only this problem type means "no payment"; any other 404 (the
		// route refused to a key that is not orders') is a setup error,
		// never a reason to publish orders.created again.
		var problem struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &problem)
		if strings.HasSuffix(problem.Type, "#no-payment-for-order") {
			return orders.PaymentView{}, orders.ErrNoPayment
		}
		return orders.PaymentView{}, fmt.Errorf("payments: get payment of order %s: 404 %s (is ORDERS_PAYMENTS_API_KEY the orders caller's key?)", orderID, strings.TrimSpace(string(body)))
	default:
		return orders.PaymentView{}, fmt.Errorf("payments: get payment %s: %s: %s", id, resp.Status, strings.TrimSpace(string(body)))
	}
	var p struct {
		ID            string `json:"id"`
		Caller        string `json:"caller"`
		OrderID       string `json:"order_id"`
		CustomerID    string `json:"customer_id"`
		Amount        int64  `json:"amount"`
		Currency      string `json:"currency"`
		Status        string `json:"status"`
		FailureReason string `json:"failure_reason"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return orders.PaymentView{}, fmt.Errorf("payments: decode payment %s: %w", id, err)
	}
	if p.ID != id || (p.OrderID != "" && p.OrderID != orderID) {
		return orders.PaymentView{}, fmt.Errorf("payments answered payment %s (order %s) for order %s", p.ID, p.OrderID, orderID)
	}
	return orders.PaymentView(p), nil
}
