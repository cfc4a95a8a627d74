// Package endpointkit holds the go-kit endpoint middlewares every payonce
// service chains around its endpoints, one concern per file: tracing
// (OpenTelemetry spans; go-kit has no OpenTelemetry package of its own),
// logging and metrics. Chain puts them in the one order services use.
package endpointkit

import (
	"log/slog"

	"github.com/go-kit/kit/endpoint"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Chain returns the standard middleware stack for the endpoint called name:
// a span around everything, then metrics, then a log line.
func Chain(name string, tracer trace.Tracer, meter metric.Meter, logger *slog.Logger) endpoint.Middleware {
	return endpoint.Chain(
		Tracing(tracer, name),
		Metrics(meter, name),
		Logging(logger, name),
	)
}
