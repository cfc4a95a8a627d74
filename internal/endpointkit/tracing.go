package endpointkit

import (
	"context"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/errs"
)

// Tracing wraps an endpoint in a span named "endpoint <name>", a child of
// the HTTP server span, and records the error kind of a failure. Client
// errors (4xx kinds) are not marked as span errors: the service did its job.
func Tracing(tracer trace.Tracer, name string) endpoint.Middleware {
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			ctx, span := tracer.Start(ctx, "endpoint "+name)
			defer span.End()
			resp, err := next(ctx, req)
			if err != nil {
				kind := errs.KindOf(err)
				span.SetAttributes(attribute.String("error.kind", kind.String()))
				if kind == errs.Internal || kind == errs.Unavailable {
					span.RecordError(err)
					span.SetStatus(codes.Error, kind.String())
				}
			}
			return resp, err
		}
	}
}
