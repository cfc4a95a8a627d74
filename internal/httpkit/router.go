package httpkit

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/errs"
)

// RouterConfig describes what a service serves besides its API.
type RouterConfig struct {
	// API serves the service's own routes (usually a go-kit transport
	// mounted on an http.ServeMux).
	API http.Handler
	// Checks are probed by /readyz.
	Checks []Check
	// ReadyTimeout bounds a /readyz probe; default 2s.
	ReadyTimeout time.Duration
	// Metrics serves /metrics; nil leaves the route out.
	Metrics http.Handler
	// MaxBodyBytes caps request bodies; default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// TracerProvider and Propagator start a server span per request that
	// continues the caller's W3C trace context.
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Logger logs recovered panics.
	Logger *slog.Logger
	// Instance, when set, is sent on every response as InstanceHeader, so
	// people can watch which instance served a request.
	Instance string
}

// InstanceHeader names the instance that produced a response.
const InstanceHeader = "Payonce-Instance"

// Router assembles a service's HTTP handler: /healthz, /readyz and
// /metrics beside the API, and around the API, from the outside in, tracing,
// panic recovery and the body size limit. Probes and metrics are not traced,
// so a scraper polling every second does not bury the payment traces.
func Router(cfg RouterConfig) http.Handler {
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	api := LimitBody(cfg.MaxBodyBytes, Recover(cfg.Logger, cfg.API))
	var otelOpts []otelhttp.Option
	if cfg.TracerProvider != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(cfg.TracerProvider))
	}
	if cfg.Propagator != nil {
		otelOpts = append(otelOpts, otelhttp.WithPropagators(cfg.Propagator))
	}
	otelOpts = append(otelOpts, otelhttp.WithSpanNameFormatter(spanName))

	probes := http.NewServeMux()
	probes.Handle("GET /healthz", Healthz())
	probes.Handle("GET /readyz", Readyz(cfg.ReadyTimeout, cfg.Checks...))
	if cfg.Metrics != nil {
		probes.Handle("GET /metrics", cfg.Metrics)
	}
	traced := otelhttp.NewHandler(api, "http.server", otelOpts...)
	// The API is not mounted on a catch-all route of an outer mux: otelhttp
	// would then rename every span after that route ("/") when the request
	// ends. The service's own Mux names the span after its route instead.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.Instance != "" {
			w.Header().Set(InstanceHeader, cfg.Instance)
		}
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			probes.ServeHTTP(w, r)
		default:
			traced.ServeHTTP(w, r)
		}
	})
}

// spanName names a server span after the matched route pattern
// ("POST /v1/orders"), never the raw path, which would put customer ids in
// span names and explode their cardinality.
func spanName(_ string, r *http.Request) string {
	if r.Pattern != "" {
		return r.Pattern
	}
	return r.Method
}

// Recover turns a panic in next into a 500 problem (and a log line with the
// stack) instead of a dropped connection.
func Recover(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				err := fmt.Errorf("panic: %v", v)
				logger.ErrorContext(r.Context(), "handler panicked", "err", err, "stack", string(debug.Stack()))
				ErrorEncoder(r.Context(), errs.Wrap(errs.Internal, "", err), w)
			}
		}()
		next.ServeHTTP(w, r)
	})
}
