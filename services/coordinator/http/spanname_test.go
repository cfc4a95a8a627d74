package http_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/payonce/payonce/services/coordinator/coordinatortest"
	coordhttp "github.com/payonce/payonce/services/coordinator/http"
	"github.com/payonce/payonce/services/coordinator/raftnode"
)

// TestServerSpansAreNamedAfterTheirRoute: a node's server spans carry the
// route that answered ("POST /v1/locks/{lock}/leases"), never the raw path
// (lock and customer names in span names) and never the catch-all "/" the
// API is mounted on. Before, every lock and membership span was named
// after that catch-all, as payments' were (TestServerSpansAreNamedAfterTheirRoute
// in services/payments/http), so Jaeger could not tell an acquire from a
// release.
func TestServerSpansAreNamedAfterTheirRoute(t *testing.T) {
	c := coordinatortest.Start(t, 1)
	node := c.Node(c.WaitLeader(10 * time.Second))
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	srv := httptest.NewServer(coordhttp.NewAPI(coordhttp.APIConfig{
		Service: raftnode.NewService(node), Cluster: node, TracerProvider: tp,
	}))
	defer srv.Close()

	var leaseID string
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{http.MethodPost, "/v1/locks/customer-7/leases", `{"owner":"o","ttl_ms":60000,"request_id":"r-1"}`, "POST /v1/locks/{lock}/leases"},
		{http.MethodGet, "/v1/locks/customer-7", "", "GET /v1/locks/{lock}"},
		{http.MethodPost, "/v1/locks/customer-7/leases/LEASE/keepalive", "", "POST /v1/locks/{lock}/leases/{lease}/keepalive"},
		{http.MethodDelete, "/v1/locks/customer-7/leases/LEASE", "", "DELETE /v1/locks/{lock}/leases/{lease}"},
		{http.MethodPut, "/v1/services/orders/members/orders-1", `{"addr":"http://127.0.0.1:1","ttl_ms":60000}`, "PUT /v1/services/{service}/members/{instance}"},
		{http.MethodGet, "/v1/services/orders/members", "", "GET /v1/services/{service}/members"},
		{http.MethodGet, "/v1/cluster", "", "GET /v1/cluster"},
	} {
		path := strings.ReplaceAll(tc.path, "LEASE", leaseID)
		before := len(recorder.Ended())
		status, _, body := do(t, tc.method, srv.URL+path, tc.body)
		if status >= 300 {
			t.Fatalf("%s %s: %d %s", tc.method, path, status, body)
		}
		if leaseID == "" {
			var l lease
			if err := json.Unmarshal(body, &l); err != nil {
				t.Fatal(err)
			}
			leaseID = l.LeaseID
		}
		var names []string
		for _, s := range recorder.Ended()[before:] {
			if s.SpanKind().String() == "server" {
				names = append(names, s.Name())
			}
		}
		if len(names) != 1 || names[0] != tc.want {
			t.Errorf("%s %s: server spans %q, want one named %q", tc.method, path, names, tc.want)
		}
	}
}
