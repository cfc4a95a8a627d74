package endpointkit

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/payonce/payonce/internal/errs"
)

// Logging writes one line per call at debug level, or at warn level when
// the service failed (internal or unavailable); the line carries the trace
// id through the context.
func Logging(logger *slog.Logger, name string) endpoint.Middleware {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			level := slog.LevelDebug
			attrs := []any{"endpoint", name, "took", time.Since(start)}
			if err != nil {
				kind := errs.KindOf(err)
				attrs = append(attrs, "kind", kind.String(), "err", err)
				if kind == errs.Internal || kind == errs.Unavailable {
					level = slog.LevelWarn
				}
			}
			logger.Log(ctx, level, "endpoint call", attrs...)
			return resp, err
		}
	}
}
