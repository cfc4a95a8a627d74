package httpkit

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	kithttp "github.com/go-kit/kit/transport/http"
)

// ServerOptions are the go-kit server options every payonce endpoint uses:
// problem+json errors through ErrorEncoder, and server-fault logging (to
// nowhere when logger is nil).
func ServerOptions(logger *slog.Logger) []kithttp.ServerOption {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return []kithttp.ServerOption{
		kithttp.ServerErrorEncoder(ErrorEncoder),
		kithttp.ServerErrorHandler(ErrorHandler{Logger: logger}),
	}
}

// EncodeJSON writes response as JSON. A response implementing go-kit's
// StatusCoder or Headerer sets its own status (e.g. 201) and headers
// (e.g. Location).
func EncodeJSON(ctx context.Context, w http.ResponseWriter, response any) error {
	return kithttp.EncodeJSONResponse(ctx, w, response)
}

// Created wraps a response body so EncodeJSON answers 201 Created with a
// Location header.
type Created struct {
	Body     any
	Location string
}

// StatusCode implements kithttp.StatusCoder.
func (c Created) StatusCode() int { return http.StatusCreated }

// Headers implements kithttp.Headerer.
func (c Created) Headers() http.Header {
	h := http.Header{}
	if c.Location != "" {
		h.Set("Location", c.Location)
	}
	return h
}

// MarshalJSON encodes the wrapped body only.
func (c Created) MarshalJSON() ([]byte, error) { return json.Marshal(c.Body) }
