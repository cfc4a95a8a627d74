// Package telemetry wires OpenTelemetry, structured logs and Prometheus
// metrics the same way in every payonce process.
//
// A payment crosses orders, NATS, payments, the coordinator and the bank. To
// follow it as one story, every hop must join the same trace: HTTP requests
// carry W3C trace context in headers (otelhttp does that), NATS messages carry
// it in message headers (InjectNATS / ExtractNATS here), and every log line
// carries the trace and span ids (NewLogHandler), so a trace id from a
// problem+json response finds both the spans in Jaeger and the log lines.
//
// Export is configured only by the standard OTEL_* environment variables, so
// the same binary runs silently in a unit test and exports to Jaeger in the
// compose stack.
package telemetry
