// Package bank is the payments service's client of the payment provider
// (in payonce, the simulator in services/bank). It turns the provider's
// answers into the three outcomes the domain distinguishes: done, refused
// for good, and unknown (no answer, or a 5xx), which must be asked again
// with the same idempotency key.
package bank

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/services/payments"
)

// Client calls the bank's REST API.
type Client struct {
	baseURL string
	http    *http.Client
}

var _ payments.Bank = (*Client)(nil)

// NewClient returns a client for the bank at baseURL. Each call is bounded
// by timeout and traced as a client span that carries the trace context to
// the bank.
func NewClient(baseURL string, timeout time.Duration, tp trace.TracerProvider) *Client {
	return &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		http: &http.Client{
			Timeout: timeout,
			Transport: otelhttp.NewTransport(http.DefaultTransport,
				otelhttp.WithTracerProvider(tp),
				otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "bank " + r.Method + " " + r.URL.Path })),
		},
	}
}

type authorization struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	DeclineReason string `json:"decline_reason"`
}

// Charge authorises and captures in one call.
func (c *Client) Charge(ctx context.Context, key string, ch payments.BankCharge) (payments.ChargeResult, error) {
	body := map[string]any{"amount": ch.Amount, "currency": ch.Currency, "card": ch.Card, "reference": ch.Reference, "capture": true}
	var a authorization
	refused, err := c.post(ctx, "/v1/authorizations", key, body, &a)
	switch {
	case err != nil:
		return payments.ChargeResult{}, err
	case refused != "":
		return payments.ChargeResult{Declined: true, DeclineReason: "bank_refused: " + refused}, nil
	case a.Status == "declined":
		return payments.ChargeResult{Declined: true, DeclineReason: a.DeclineReason}, nil
	case a.Status == "captured":
		return payments.ChargeResult{BankChargeID: a.ID}, nil
	default:
		return payments.ChargeResult{}, fmt.Errorf("bank answered status %q for a capture", a.Status)
	}
}

// Refund refunds amount of a captured charge.
func (c *Client) Refund(ctx context.Context, key, chargeID string, amount int64) (payments.RefundResult, error) {
	var r struct {
		ID string `json:"id"`
	}
	refused, err := c.post(ctx, "/v1/authorizations/"+chargeID+"/refunds", key, map[string]int64{"amount": amount}, &r)
	switch {
	case err != nil:
		return payments.RefundResult{}, err
	case refused != "":
		return payments.RefundResult{Refused: true, Reason: refused}, nil
	default:
		return payments.RefundResult{BankRefundID: r.ID}, nil
	}
}

// post sends body and decodes a 2xx answer into out. A 4xx is a definite
// refusal, returned as its detail; anything else (5xx, timeout, dropped
// connection) is an error: the outcome is unknown.
func (c *Client) post(ctx context.Context, path, key string, body, out any) (refused string, err error) {
	b, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+path, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("bank %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("bank %s: read answer: %w", path, err)
	}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("bank %s: decode answer: %w", path, err)
		}
		return "", nil
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(data, &p)
		if p.Detail == "" {
			p.Detail = resp.Status
		}
		return p.Detail, nil
	default:
		return "", fmt.Errorf("bank %s: %s", path, resp.Status)
	}
}
