// Package http exposes the simulated bank over REST/JSON with go-kit:
// decode functions turn requests into the endpoint's request types, the
// endpoints call the Simulator, and every error leaves through the shared
// problem+json encoder, except a deliberately lost response, which is a
// dropped connection.
package http

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/bank"
)

// IdempotencyKeyHeader carries the caller's idempotency key.
const IdempotencyKeyHeader = "Idempotency-Key"

type authorizeRequest struct {
	key string
	bank.AuthorizeRequest
}

type amountRequest struct {
	key    string
	id     string
	Amount int64 `json:"amount"`
}

// NewHandler routes the bank's API and admin endpoints to sim.
func NewHandler(sim *bank.Simulator, logger *slog.Logger) http.Handler {
	opts := append(httpkit.ServerOptions(logger), kithttp.ServerErrorEncoder(encodeError))
	mux := httpkit.NewMux()
	handle := func(pattern string, e endpoint.Endpoint, dec kithttp.DecodeRequestFunc) {
		mux.Handle(pattern, kithttp.NewServer(e, dec, httpkit.EncodeJSON, opts...))
	}
	handle("POST /v1/authorizations", func(ctx context.Context, req any) (any, error) {
		r := req.(authorizeRequest)
		a, err := sim.Authorize(ctx, r.key, r.AuthorizeRequest)
		if err != nil {
			return a, err
		}
		return httpkit.Created{Body: a, Location: "/v1/authorizations/" + a.ID}, nil
	}, decodeAuthorize)
	handle("POST /v1/authorizations/{id}/capture", func(ctx context.Context, req any) (any, error) {
		r := req.(amountRequest)
		return sim.Capture(ctx, r.key, r.id, r.Amount)
	}, decodeAmount)
	handle("POST /v1/authorizations/{id}/refunds", func(ctx context.Context, req any) (any, error) {
		r := req.(amountRequest)
		refund, err := sim.Refund(ctx, r.key, r.id, r.Amount)
		if err != nil {
			return refund, err
		}
		return httpkit.Created{Body: refund}, nil
	}, decodeAmount)
	handle("GET /v1/authorizations/{id}", func(ctx context.Context, req any) (any, error) {
		return sim.Authorization(ctx, req.(string))
	}, func(_ context.Context, r *http.Request) (any, error) { return r.PathValue("id"), nil })
	handle("GET "+LedgerPath, func(ctx context.Context, req any) (any, error) {
		return map[string]any{"entries": sim.Ledger(ctx, req.(bank.LedgerFilter))}, nil
	}, func(_ context.Context, r *http.Request) (any, error) {
		q := r.URL.Query()
		return bank.LedgerFilter{Reference: q.Get("reference"), IdempotencyKey: q.Get("idempotency_key"), Kind: bank.EntryKind(q.Get("kind"))}, nil
	})
	handle("GET /admin/faults", func(context.Context, any) (any, error) {
		return sim.Faults(), nil
	}, kithttp.NopRequestDecoder)
	handle("PUT /admin/faults", func(_ context.Context, req any) (any, error) {
		f := req.(bank.Faults)
		if err := sim.SetFaults(f); err != nil {
			return nil, err
		}
		return sim.Faults(), nil
	}, func(_ context.Context, r *http.Request) (any, error) {
		var f bank.Faults
		err := httpkit.DecodeJSON(r, &f)
		return f, err
	})
	return mux
}

func decodeAuthorize(_ context.Context, r *http.Request) (any, error) {
	req := authorizeRequest{key: r.Header.Get(IdempotencyKeyHeader)}
	err := httpkit.DecodeJSON(r, &req.AuthorizeRequest)
	return req, err
}

func decodeAmount(_ context.Context, r *http.Request) (any, error) {
	req := amountRequest{key: r.Header.Get(IdempotencyKeyHeader), id: r.PathValue("id")}
	err := httpkit.DecodeJSON(r, &req)
	return req, err
}

// encodeError drops the connection for a deliberately lost response, so the
// client sees what a network failure after processing looks like; every
// other error is problem+json.
func encodeError(ctx context.Context, err error, w http.ResponseWriter) {
	if errors.Is(err, bank.ErrResponseLost) {
		// net/http answers an aborted handler that wrote nothing by closing
		// the connection (HTTP/1) or resetting the stream (HTTP/2).
		panic(http.ErrAbortHandler)
	}
	var injected bank.InjectedAnswer
	if errors.As(err, &injected) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(injected.Status)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"type":   "about:blank",
			"title":  http.StatusText(injected.Status),
			"status": injected.Status,
			"detail": injected.Error(),
		})
		return
	}
	httpkit.ErrorEncoder(ctx, err, w)
}
