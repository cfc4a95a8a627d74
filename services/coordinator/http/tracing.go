package http

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/errs"
)

// Tracing returns an endpoint middleware factory that wraps each endpoint in
// a span named after it; go-kit has no OpenTelemetry package of its own.
// Client errors (4xx kinds) do not mark the span as failed: the coordinator
// did its job.
func Tracing(tracer trace.Tracer) func(name string) endpoint.Middleware {
	return func(name string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			return func(ctx context.Context, req any) (any, error) {
				ctx, span := tracer.Start(ctx, name)
				defer span.End()
				resp, err := next(ctx, req)
				if err != nil {
					span.RecordError(err)
					if k := errs.KindOf(err); k == errs.Internal || k == errs.Unavailable {
						span.SetStatus(codes.Error, err.Error())
					}
				}
				return resp, err
			}
		}
	}
}
