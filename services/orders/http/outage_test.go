package http_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-kit/kit/endpoint"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/payonce/payonce/internal/apikey"
	"github.com/payonce/payonce/internal/events"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/localpg"
	"github.com/payonce/payonce/internal/membership"
	"github.com/payonce/payonce/internal/partition"
	"github.com/payonce/payonce/migrations"
	"github.com/payonce/payonce/pkg/idempotency"
	"github.com/payonce/payonce/services/orders"
	ordershttp "github.com/payonce/payonce/services/orders/http"
	"github.com/payonce/payonce/services/orders/postgres"
)

const outageAPIKey = "outage-test-key-0123456789"

// soleInstance owns every customer: the handler under test never forwards.
type soleInstance struct{}

func (soleInstance) Self() membership.Member { return membership.Member{Instance: "orders-1"} }
func (soleInstance) Owner(string) (membership.Member, bool) {
	return membership.Member{Instance: "orders-1"}, true
}

// ordersAPI is the orders HTTP API on pool, wired as cmd/orders wires it
// (minus telemetry and quotas).
func ordersAPI(t *testing.T, pool *pgxpool.Pool) *httptest.Server {
	t.Helper()
	keys, err := apikey.Parse("shop:" + outageAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	seal := events.NewSealKey("outage-test-secret-0123456789abcdef")
	store := postgres.NewStore(pool, propagation.TraceContext{})
	store.Seal = seal
	svc := orders.NewService(store, orders.DemoCatalog, seal, noop.NewTracerProvider().Tracer(""), slog.New(slog.DiscardHandler))
	idem, err := idempotency.NewMiddleware(idempotency.NewStore(pool, idempotency.Config{}), idempotency.Options{
		Scope: apikey.Scope, ErrorWriter: httpkit.ErrorEncoder,
	})
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) endpoint.Middleware { return func(e endpoint.Endpoint) endpoint.Endpoint { return e } }
	api := ordershttp.NewHandler(ordershttp.MakeEndpoints(svc, none), keys, idem,
		partition.Router{Owners: soleInstance{}, MaxBody: httpkit.DefaultMaxBodyBytes}, nil, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, method, url, key, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+outageAPIKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

const orderBody = `{"customer_id":"alice","currency":"EUR","card":"4242424242424242","lines":[{"sku":"cup","quantity":1}]}`

// everyRouteIsUnavailable asks each route of the orders API and wants the
// database's absence answered as 503 unavailable problem+json with
// Retry-After, never as a 500.
func everyRouteIsUnavailable(t *testing.T, base, orderID, why string) {
	t.Helper()
	for _, r := range []struct{ method, path, key, body string }{
		{"GET", "/v1/orders/" + orderID, "", ""},
		{"GET", "/v1/customers/alice/orders", "", ""},
		{"POST", "/v1/orders", "order-during-" + strings.ReplaceAll(why, " ", "-"), orderBody},
		{"POST", "/v1/orders/" + orderID + "/cancel", "cancel-during-" + strings.ReplaceAll(why, " ", "-"), ""},
	} {
		got := send(t, r.method, base+r.path, r.key, r.body)
		var p struct {
			Type   string `json:"type"`
			Status int    `json:"status"`
		}
		_ = json.Unmarshal([]byte(got.body), &p)
		if got.status != http.StatusServiceUnavailable || got.header.Get("Content-Type") != httpkit.ProblemContentType ||
			!strings.HasSuffix(p.Type, "#unavailable") || p.Status != 503 || got.header.Get("Retry-After") == "" {
			t.Errorf("%s: %s %s: %d %v %s, want 503 unavailable problem+json with Retry-After", why, r.method, r.path, got.status, got.header, got.body)
		}
	}
}

// TestOrdersAnswersUnavailableWhileItsDatabaseIsAway stops the orders
// database (a real PostgreSQL, shut down; the pool's connections are cut
// and new ones refused) under a running orders API, and closes the pool of
// another: every route answers 503 unavailable with Retry-After, the
// documented "retry later" answer, not 500 "our fault". Before the outage
// the same API creates and reads an order, so the wiring is known good.
func TestOrdersAnswersUnavailableWhileItsDatabaseIsAway(t *testing.T) {
	ctx := context.Background()
	pg, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	if err := pg.CreateDatabase(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Up(ctx, pg.URL("orders"), "orders"); err != nil {
		t.Fatal(err)
	}
	newPool := func() *pgxpool.Pool {
		pool, err := pgxpool.New(ctx, pg.URL("orders"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return pool
	}
	stopped, closed := newPool(), newPool()
	api, closedAPI := ordersAPI(t, stopped), ordersAPI(t, closed)

	created := send(t, "POST", api.URL+"/v1/orders", "first-order", orderBody)
	var o struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(created.body), &o); created.status != http.StatusCreated || err != nil || o.ID == "" {
		t.Fatalf("create before the outage: %d %s", created.status, created.body)
	}
	for _, base := range []string{api.URL, closedAPI.URL} {
		if got := send(t, "GET", base+"/v1/orders/"+o.ID, "", ""); got.status != http.StatusOK {
			t.Fatalf("read before the outage: %d %s", got.status, got.body)
		}
	}

	closed.Close()
	everyRouteIsUnavailable(t, closedAPI.URL, o.ID, "pool closed")

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	// Twice: the first round meets the pool's connections the shutdown
	// cut, the second only refused connection attempts.
	everyRouteIsUnavailable(t, api.URL, o.ID, "database stopped")
	everyRouteIsUnavailable(t, api.URL, o.ID, "database still stopped")
}
