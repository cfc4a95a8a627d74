// Package bank is the payments service's client of the payment provider
// (in payonce, the simulator in services/bank). It turns the provider's
// answers into the outcomes the domain distinguishes:
//
//   - done: a 2xx with the charge or refund;
//   - declined (refused for good): a 2xx saying "declined", or a 4xx not
//     listed below (400, 402, 422: the bank has looked at this request and
//     says no); only this makes a payment failed;
//   - unknown: no answer, a timeout, 408, 409 ("same key still in
//     progress"), 423, 425, 429 or any 5xx. The bank may have acted or may
//     still act, so the payment stays authorizing and is asked again with
//     the same idempotency key;
//   - misconfigured: 401, 403 or 404. Our credentials or URL are wrong, not
//     the customer's card: the payment stays authorizing (never declined
//     for our mistake), and an error log and a metric
//     (payonce.bank.answers{outcome="misconfigured"}) say so.
package bank

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/services/payments"
)

// Client calls the bank's REST API.
type Client struct {
	baseURL string
	http    *http.Client
	// base carries the calls under the tracing transport: with
	// WithTransport, one that presents this instance's certificate.
	base    http.RoundTripper
	logger  *slog.Logger
	answers metric.Int64Counter
}

var _ payments.Bank = (*Client)(nil)

// ErrMisconfigured marks a 401, 403 or 404 from the bank: this service's
// credentials or URL are wrong. The payment is left as it is (the domain
// treats it as an unknown outcome) until an operator fixes the setting.
var ErrMisconfigured = errors.New("bank refused us (credentials or URL misconfigured); nothing is declined")

// Option tunes a Client.
type Option func(*Client)

// WithLogger logs misconfiguration answers at error level.
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.logger = l } }

// WithTransport sends the calls through base instead of
// http.DefaultTransport: with the instance's identity, a transport that
// presents its certificate and accepts only a server proving it is the bank
// (identity.HTTPClient(files, 0, identity.Bank).Transport).
func WithTransport(base http.RoundTripper) Option { return func(c *Client) { c.base = base } }

// WithMeter counts the bank's answers by operation, outcome and status as
// payonce.bank.answers.
func WithMeter(m metric.Meter) Option {
	return func(c *Client) {
		if counter, err := m.Int64Counter("payonce.bank.answers",
			metric.WithDescription("the bank's answers by operation, outcome (done, declined, unknown, misconfigured) and HTTP status")); err == nil {
			c.answers = counter
		}
	}
}

// NewClient returns a client for the bank at baseURL. Each call is bounded
// by timeout and traced as a client span that carries the trace context to
// the bank.
func NewClient(baseURL string, timeout time.Duration, tp trace.TracerProvider, opts ...Option) *Client {
	c := &Client{
		baseURL: strings.TrimRight(baseURL, "/"),
		base:    http.DefaultTransport,
		logger:  slog.New(slog.DiscardHandler),
	}
	c.answers, _ = noop.NewMeterProvider().Meter("").Int64Counter("")
	for _, o := range opts {
		o(c)
	}
	c.http = &http.Client{
		Timeout: timeout,
		Transport: otelhttp.NewTransport(c.base,
			otelhttp.WithTracerProvider(tp),
			otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "bank " + r.Method + " " + r.URL.Path })),
	}
	return c
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
	refused, err := c.post(ctx, "charge", "/v1/authorizations", key, body, &a)
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
	refused, err := c.post(ctx, "refund", "/v1/authorizations/"+chargeID+"/refunds", key, map[string]int64{"amount": amount}, &r)
	switch {
	case err != nil:
		return payments.RefundResult{}, err
	case refused != "":
		return payments.RefundResult{Refused: true, Reason: refused}, nil
	default:
		return payments.RefundResult{BankRefundID: r.ID}, nil
	}
}

// Outcome is how the client reads one answer of the bank.
type Outcome string

// Outcomes of a bank answer; see the package doc.
const (
	Done          Outcome = "done"
	Declined      Outcome = "declined"
	Unknown       Outcome = "unknown"
	Misconfigured Outcome = "misconfigured"
)

// Classify reads an HTTP status from the bank. It is the whole policy of
// this package in one switch, and the table test's subject.
func Classify(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return Done
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		return Misconfigured
	case status == http.StatusRequestTimeout, status == http.StatusConflict, status == http.StatusLocked,
		status == http.StatusTooEarly, status == http.StatusTooManyRequests, status >= 500:
		return Unknown
	case status >= 400 && status < 500:
		return Declined
	default:
		// 1xx/3xx are not answers this API gives: nothing is known.
		return Unknown
	}
}

// post sends body and decodes a 2xx answer into out. A declining 4xx is
// returned as its detail (refused); an unknown outcome or a
// misconfiguration is an error, so the caller asks again later with the
// same key.
func (c *Client) post(ctx context.Context, op, path, key string, body, out any) (refused string, err error) {
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
		c.count(ctx, op, Unknown, "none")
		return "", fmt.Errorf("bank %s: %w", path, err)
	}
	defer resp.Body.Close()
	outcome := Classify(resp.StatusCode)
	c.count(ctx, op, outcome, strconv.Itoa(resp.StatusCode))
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("bank %s: read answer: %w", path, err)
	}
	switch outcome {
	case Done:
		if err := json.Unmarshal(data, out); err != nil {
			return "", fmt.Errorf("bank %s: decode answer: %w", path, err)
		}
		return "", nil
	case Declined:
		var p struct {
			Detail string `json:"detail"`
		}
		_ = json.Unmarshal(data, &p)
		if p.Detail == "" {
			p.Detail = resp.Status
		}
		return p.Detail, nil
	case Misconfigured:
		c.logger.ErrorContext(ctx, "the bank refuses this service: check the bank URL and credentials; the payment waits, nothing is declined",
			"operation", op, "path", path, "status", resp.StatusCode, "idempotency_key", key)
		return "", fmt.Errorf("bank %s: %s: %w", path, resp.Status, ErrMisconfigured)
	default:
		return "", fmt.Errorf("bank %s: %s (outcome unknown; ask again with the same key)", path, resp.Status)
	}
}

func (c *Client) count(ctx context.Context, op string, outcome Outcome, status string) {
	c.answers.Add(ctx, 1, metric.WithAttributes(
		attribute.String("operation", op), attribute.String("outcome", string(outcome)), attribute.String("status", status)))
}
