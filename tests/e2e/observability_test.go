//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const prometheus = "http://127.0.0.1:9090"

// TestSpansNameTheirInstance: orders-1 and orders-2 both serve orders, and
// in Jaeger their spans must be told apart by the service.instance.id
// process tag, or the ring owner of a customer is invisible.
func TestSpansNameTheirInstance(t *testing.T) {
	stack(t)
	for i, base := range []string{orders1, orders2, orders1, orders2} {
		order := map[string]any{"customer_id": "e2e-inst-" + randomHex(4), "currency": "EUR", "card": "4242424242424242",
			"lines": []map[string]any{{"sku": "cup", "quantity": 1}}}
		if r := call(t, "POST", base+"/v1/orders", demoAPIKey, "e2e-inst-"+strconv.Itoa(i)+randomHex(6), order, nil); r.status != 201 {
			t.Fatalf("create order on %s: %d %s", base, r.status, r.body)
		}
	}
	eventually(t, 60*time.Second, "Jaeger to hold spans of orders-1 and orders-2", func() (bool, string) {
		g := call(t, "GET", jaeger+"/api/traces?service=orders&limit=200&lookback=1h", "", "", nil, nil)
		var list struct {
			Data []struct {
				Processes map[string]struct {
					ServiceName string
					Tags        []struct {
						Key   string
						Value any
					}
				}
			}
		}
		g.decode(t, &list)
		seen := map[string]bool{}
		for _, tr := range list.Data {
			for _, p := range tr.Processes {
				for _, tag := range p.Tags {
					if p.ServiceName == "orders" && tag.Key == "service.instance.id" {
						seen[fmt.Sprint(tag.Value)] = true
					}
				}
			}
		}
		return seen["orders-1"] && seen["orders-2"], fmt.Sprintf("orders instances seen in %d traces: %v", len(list.Data), seen)
	})
}

// TestPrometheusScrapesEveryTarget: every service instance, coordinator
// node and NATS (through nats-exporter) is a target, and every target is up.
func TestPrometheusScrapesEveryTarget(t *testing.T) {
	stack(t)
	want := []string{
		"bank bank:8099",
		"coordinator coordinator-1:8080", "coordinator coordinator-2:8080", "coordinator coordinator-3:8080",
		"nats nats-exporter:7777",
		"orders orders-1:8080", "orders orders-2:8080",
		"payments payments-1:8090", "payments payments-2:8090",
	}
	eventually(t, 60*time.Second, "every Prometheus target to be up", func() (bool, string) {
		g := call(t, "GET", prometheus+"/api/v1/targets?state=active", "", "", nil, nil)
		var resp struct {
			Data struct {
				ActiveTargets []struct {
					Labels    map[string]string
					Health    string
					LastError string
				}
			}
		}
		g.decode(t, &resp)
		var up, all []string
		for _, tg := range resp.Data.ActiveTargets {
			name := tg.Labels["job"] + " " + tg.Labels["instance"]
			all = append(all, name+"="+tg.Health+" "+tg.LastError)
			if tg.Health == "up" {
				up = append(up, name)
			}
		}
		slices.Sort(up)
		return slices.Equal(up, want) && len(all) == len(want), fmt.Sprintf("targets: %v", all)
	})
}

// TestAPaymentMovesThePaymentCounters makes one payment and waits for
// Prometheus to see it in the payments service's counters and in the
// gauge of payments by status (read from the payments database).
func TestAPaymentMovesThePaymentCounters(t *testing.T) {
	stack(t)
	queries := []string{
		`sum(payonce_endpoint_duration_seconds_count{job="payments",endpoint="create_payment",outcome="ok"})`,
		`sum(payonce_idempotency_requests_total{job="payments",outcome="claimed"})`,
		`max(payonce_payments_by_status{job="payments",status="succeeded"})`,
	}
	before := make([]float64, len(queries))
	for i, q := range queries {
		before[i] = promValue(t, q)
	}
	body := map[string]any{"customer_id": "e2e-prom-" + randomHex(4), "amount": 990, "currency": "EUR", "card": "4242424242424242"}
	if r := call(t, "POST", payments2+"/v1/payments", demoAPIKey, "e2e-prom-"+randomHex(8), body, nil); r.status != 201 {
		t.Fatalf("create payment: %d %s", r.status, r.body)
	}
	for i, q := range queries {
		eventually(t, 60*time.Second, q+" to grow past "+fmt.Sprint(before[i]), func() (bool, string) {
			v := promValue(t, q)
			return v >= before[i]+1, fmt.Sprintf("now %v", v)
		})
	}
}

// TestDashboardsAndAlertsUseExportedMetrics reads every query of the
// Grafana dashboards and the alerting rules and checks each metric name in
// it against the names Prometheus has scraped from the running stack, so a
// renamed metric breaks this test, not a dashboard nobody looks at.
func TestDashboardsAndAlertsUseExportedMetrics(t *testing.T) {
	stack(t)
	var exprs []string
	dashboards, _ := filepath.Glob("../../deploy/grafana/dashboards/*.json")
	if len(dashboards) == 0 {
		t.Fatal("no dashboards in deploy/grafana/dashboards")
	}
	for _, path := range dashboards {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct{ Targets []struct{ Expr string } }
		}
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, p := range d.Panels {
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	rules, _ := filepath.Glob("../../deploy/prometheus/rules/*.yml")
	for _, path := range rules {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^\s*expr:\s*(.+)$`).FindAllStringSubmatch(string(b), -1) {
			exprs = append(exprs, m[1])
		}
	}
	if len(exprs) < 10 {
		t.Fatalf("found only %d queries in the dashboards and rules", len(exprs))
	}

	g := call(t, "GET", prometheus+"/api/v1/label/__name__/values", "", "", nil, nil)
	var names struct{ Data []string }
	g.decode(t, &names)
	for _, expr := range exprs {
		used := metricNames(expr)
		if len(used) == 0 {
			t.Errorf("no metric name found in %q", expr)
		}
		for _, name := range used {
			if !slices.Contains(names.Data, name) {
				t.Errorf("%q uses %s, which no target exports (exported: %d names)", expr, name, len(names.Data))
			}
		}
	}
}

// metricNames returns the metric names in a PromQL expression: what is
// left once label matchers, grouping clauses, ranges, strings, numbers,
// functions and keywords are taken out. Enough for the queries here.
func metricNames(expr string) []string {
	for _, re := range []string{`"[^"]*"`, `\{[^}]*\}`, `\[[^\]]*\]`, `\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`} {
		expr = regexp.MustCompile(re).ReplaceAllString(expr, " ")
	}
	keywords := []string{"and", "or", "unless", "bool", "offset", "by", "without"}
	var out []string
	for _, m := range regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`).FindAllString(expr, -1) {
		if strings.HasSuffix(m, "(") || slices.Contains(keywords, m) {
			continue // a function, or a keyword
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// promValue runs an instant query that returns one number (0 when the
// series does not exist yet).
func promValue(t *testing.T, query string) float64 {
	t.Helper()
	g := call(t, "GET", prometheus+"/api/v1/query?query="+url.QueryEscape(query), "", "", nil, nil)
	var resp struct {
		Status string
		Data   struct {
			Result []struct{ Value []any }
		}
	}
	g.decode(t, &resp)
	if resp.Status != "success" {
		t.Fatalf("query %s: %s", query, g.body)
	}
	if len(resp.Data.Result) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(fmt.Sprint(resp.Data.Result[0].Value[1]), 64)
	if err != nil {
		t.Fatalf("query %s: value %v: %v", query, resp.Data.Result[0].Value, err)
	}
	return v
}
