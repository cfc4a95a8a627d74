package http

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/payments"
)

// TestServerSpansAreNamedAfterTheirRoute: the server span of every payments
// request is named after the route that served it, in front of the API as
// the service mounts it (OrderPaymentRoutes around the API's own mux). A
// catch-all route there once renamed every span "/", which hid a payment's
// requests in Jaeger and emptied bench/payments' breakdown.
func TestServerSpansAreNamedAfterTheirRoute(t *testing.T) {
	keys, err := apikey.Parse("orders:orders-key-0123456789abcdef,shop:shop-key-0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	api := httpkit.NewMux()
	api.HandleFunc("POST /v1/payments", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	api.HandleFunc("GET /v1/payments/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	reader := payments.OrderPayments{Store: nil}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	// Authenticated as NewHandler does it: the API's mux then routes a
	// copy of the request (its context carries the caller), so the name
	// it gives the span is the one that must stand.
	handler := httpkit.Router(httpkit.RouterConfig{API: OrderPaymentRoutes(reader, keys, keys.Authenticate(api)), TracerProvider: tp})

	for _, tc := range []struct {
		method, path, key, want string
	}{
		{http.MethodPost, "/v1/payments", "shop-key-0123456789abcdef", "POST /v1/payments"},
		{http.MethodGet, "/v1/payments/7", "shop-key-0123456789abcdef", "GET /v1/payments/{id}"},
		// Not the orders caller: 404 before the store is read, but the
		// span still names the route that answered.
		{http.MethodGet, "/internal/v1/orders/o-1/payment", "shop-key-0123456789abcdef", "GET " + OrderPaymentPath},
	} {
		before := len(recorder.Ended())
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.Header.Set("Authorization", "Bearer "+tc.key)
		handler.ServeHTTP(httptest.NewRecorder(), req)
		ended := recorder.Ended()
		if len(ended) != before+1 {
			t.Fatalf("%s %s: %d spans ended, want 1", tc.method, tc.path, len(ended)-before)
		}
		if got := ended[len(ended)-1].Name(); got != tc.want {
			t.Errorf("%s %s: server span named %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}
