package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// Config names the process and says where its signals go.
type Config struct {
	// ServiceName becomes service.name unless OTEL_SERVICE_NAME overrides it.
	ServiceName string
	// ServiceVersion becomes service.version.
	ServiceVersion string
	// InstanceID becomes service.instance.id: which of a service's
	// instances (orders-1, orders-2, coordinator c2) did the work. When
	// empty, INSTANCE_ID is read, then the host name, which is the pod's
	// name on Kubernetes and the container id under compose.
	InstanceID string
	// Getenv reads OTEL_* and LOG_* variables; os.Getenv in production,
	// a map lookup in tests.
	Getenv func(string) string
	// LogOutput receives the process's structured logs.
	LogOutput io.Writer
	// SpanProcessors are added to the tracer provider, e.g. an in-memory
	// recorder in tests or a trace printer in the dev stack.
	SpanProcessors []sdktrace.SpanProcessor
}

// InstanceKey is the resource attribute naming a service's instance. On
// /metrics it is the label service_instance_id.
const InstanceKey = "service.instance.id"

// Telemetry holds a process's providers. Pass its fields explicitly where
// you can; Setup also installs them as the OpenTelemetry globals so that
// instrumentation libraries (otelhttp, the pgx tracer) find them.
type Telemetry struct {
	TracerProvider *sdktrace.TracerProvider
	MeterProvider  *sdkmetric.MeterProvider
	Propagator     propagation.TextMapPropagator
	Registry       *prometheus.Registry
	Logger         *slog.Logger
	// InstanceID is the service.instance.id of every span and series.
	InstanceID string
	// Exporting reports whether spans leave the process over OTLP.
	Exporting bool
}

// Setup builds the tracer provider (exporting over OTLP only when an OTLP
// endpoint is configured by OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, and OTEL_TRACES_EXPORTER is not
// "none"), a meter provider read by Prometheus, the W3C tracecontext and
// baggage propagators, and a JSON slog logger that stamps trace ids.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	instance := cfg.InstanceID
	if instance == "" {
		instance = getenv("INSTANCE_ID")
	}
	if instance == "" {
		instance, _ = os.Hostname()
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", cfg.ServiceName),
			attribute.String("service.version", cfg.ServiceVersion),
			attribute.String(InstanceKey, instance),
		),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	if name := getenv("OTEL_SERVICE_NAME"); name != "" {
		res, _ = resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", name)))
	}
	if attrs := parseResourceAttributes(getenv("OTEL_RESOURCE_ATTRIBUTES")); len(attrs) > 0 {
		res, _ = resource.Merge(res, resource.NewSchemaless(attrs...))
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporter, err := newSpanExporter(ctx, getenv)
	if err != nil {
		return nil, err
	}
	if exporter != nil {
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exporter))
	}
	for _, sp := range cfg.SpanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The resource's service.instance.id becomes a label of every series
	// (service_instance_id), so that a dashboard can tell orders-1 from
	// orders-2 whatever address Prometheus scraped them at; the rest of the
	// resource stays in target_info.
	promExporter, err := otelprom.New(otelprom.WithRegisterer(reg),
		otelprom.WithResourceAsConstantLabels(attribute.NewAllowKeysFilter(InstanceKey)))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(promExporter))

	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	out := cfg.LogOutput
	if out == nil {
		out = io.Discard
	}
	logger, err := NewLogger(out, getenv("LOG_LEVEL"), getenv("LOG_FORMAT"))
	if err != nil {
		return nil, err
	}
	logger = logger.With("service", cfg.ServiceName)

	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	otel.SetTextMapPropagator(prop)

	return &Telemetry{
		TracerProvider: tp,
		MeterProvider:  mp,
		Propagator:     prop,
		Registry:       reg,
		Logger:         logger,
		InstanceID:     instance,
		Exporting:      exporter != nil,
	}, nil
}

// Tracer returns a named tracer from the process's provider.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// Meter returns a named meter whose instruments appear on /metrics.
func (t *Telemetry) Meter(name string) metric.Meter { return t.MeterProvider.Meter(name) }

// MetricsHandler serves the Prometheus exposition format. Every series
// carries service_instance_id: the OpenTelemetry instruments' from the
// exporter, and those registered on Registry directly (the Go runtime's, the
// coordinator's Raft metrics) get it added here.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(instanceLabeled{t.Registry, t.InstanceID}, promhttp.HandlerOpts{Registry: t.Registry})
}

// instanceLabeled adds the service_instance_id label to every gathered
// series that lacks it.
type instanceLabeled struct {
	prometheus.Gatherer
	instance string
}

const instanceLabel = "service_instance_id"

func (g instanceLabeled) Gather() ([]*dto.MetricFamily, error) {
	families, err := g.Gatherer.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == instanceLabel }) {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(instanceLabel), Value: proto.String(g.instance)})
				slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
			}
		}
	}
	return families, err
}

// Shutdown flushes spans still buffered in the batcher, then stops the
// providers. Call it with a fresh, bounded context after the servers have
// stopped, or the last requests' spans never reach Jaeger.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	return errors.Join(t.TracerProvider.Shutdown(ctx), t.MeterProvider.Shutdown(ctx))
}

func newSpanExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if getenv("OTEL_SDK_DISABLED") == "true" || getenv("OTEL_TRACES_EXPORTER") == "none" {
		return nil, nil
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	// The exporters read the endpoint, headers, timeout and TLS settings
	// from the same OTEL_* variables themselves.
	switch protocol {
	case "", "http/protobuf":
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp http exporter: %w", err)
		}
		return exp, nil
	case "grpc":
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp grpc exporter: %w", err)
		}
		return exp, nil
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: want grpc or http/protobuf", protocol)
	}
}

// parseResourceAttributes reads OTEL_RESOURCE_ATTRIBUTES ("k1=v1,k2=v2").
func parseResourceAttributes(s string) []attribute.KeyValue {
	var kvs []attribute.KeyValue
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && k != "" {
			kvs = append(kvs, attribute.String(k, v))
		}
	}
	return kvs
}
