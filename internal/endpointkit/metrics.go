package endpointkit

import (
	"context"
	"time"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/payonce/payonce/internal/errs"
)

// Metrics counts calls and records their duration per endpoint and
// outcome ("ok" or the error kind), exported on /metrics as
// payonce_endpoint_duration_seconds.
func Metrics(meter metric.Meter, name string) endpoint.Middleware {
	duration, err := meter.Float64Histogram("payonce.endpoint.duration",
		metric.WithUnit("s"), metric.WithDescription("Endpoint call duration by endpoint and outcome."))
	if err != nil {
		// The SDK only fails on an invalid name, which is a constant here.
		panic(err)
	}
	return func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			start := time.Now()
			resp, err := next(ctx, req)
			outcome := "ok"
			if err != nil {
				outcome = errs.KindOf(err).String()
			}
			duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(
				attribute.String("endpoint", name), attribute.String("outcome", outcome)))
			return resp, err
		}
	}
}
