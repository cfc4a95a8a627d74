// Package remote implements the console's ports (console.Stack and
// console.Control) over HTTP: the coordinators' node status and membership
// APIs, the orders and payments public APIs as the dev-mode demo caller, the
// services' /metrics, the simulated bank's ledger and fault switches, and the
// dev stack's control endpoint. It uses no credential beyond the demo API key
// that the dev stack and the compose stack both publish, and, with the
// coordinators behind TLS, the console's own certificate (Config.Client).
package remote

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/pkg/ring"
	"github.com/payonce/payonce/services/console"
)

// Config says where the stack's APIs are.
type Config struct {
	// CoordinatorURLs are the coordinator nodes' HTTP base URLs.
	CoordinatorURLs []string
	// BankURL is the simulated bank's base URL.
	BankURL string
	// InstanceURLs are the orders and payments instances' public API base
	// URLs by instance name. The coordinator's membership holds where peers
	// reach an instance, which with identities is its internal listener
	// (mutual TLS, peers of its own service only): the console is not a
	// peer, so it reads /metrics and calls the API at these URLs instead.
	// An instance not listed is called at its member address.
	InstanceURLs map[string]string
	// APIKey is the demo caller's key (Authorization: Bearer).
	APIKey string
	// TracesURL is where one trace is fetched, as TracesURL/{id}: Jaeger's
	// query API (http://jaeger:16686/api/traces) or the dev stack's
	// control endpoint (/traces). Empty: no inline traces.
	TracesURL string
	// Timeout bounds each request; a stopped node must not stall a view.
	Timeout time.Duration
	// Client carries every request (nil: a plain one). Behind TLS it is
	// the console's identity (identity.HTTPClient): the coordinators answer
	// only callers with a certificate. Its Timeout, when zero, is Timeout.
	Client *http.Client
}

// Stack reads the running stack; it implements console.Stack.
type Stack struct {
	cfg    Config
	client *http.Client
}

// NewStack returns a Stack for cfg.
func NewStack(cfg Config) *Stack {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	client := &http.Client{Timeout: cfg.Timeout}
	if cfg.Client != nil {
		c := *cfg.Client
		if c.Timeout == 0 {
			c.Timeout = cfg.Timeout
		}
		client = &c
	}
	return &Stack{cfg: cfg, client: client}
}

var _ console.Stack = (*Stack)(nil)

// maxBody bounds every answer read: the console reads small JSON documents
// and metrics pages.
const maxBody = 4 << 20

// do sends one request and decodes a 2xx JSON answer into out (if not nil).
func (s *Stack) do(ctx context.Context, method, rawURL string, header http.Header, body []byte, out any) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, r)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Traceparent") == "" {
		// The console's reads are not what a learner wants to find in
		// Jaeger: an unsampled parent makes the services (parent-based
		// sampling, OpenTelemetry's default) record nothing for them.
		req.Header.Set("Traceparent", "00-"+randomHex(16)+"-"+randomHex(8)+"-00")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return resp, nil, fmt.Errorf("%s %s: %w", method, rawURL, err)
	}
	if out != nil {
		if resp.StatusCode/100 != 2 {
			return resp, data, fmt.Errorf("%s %s: %s: %s", method, rawURL, resp.Status, bytes.TrimSpace(data))
		}
		if err := json.Unmarshal(data, out); err != nil {
			return resp, data, fmt.Errorf("%s %s: %w", method, rawURL, err)
		}
	}
	return resp, data, nil
}

func (s *Stack) callerHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + s.cfg.APIKey}}
}

// baseURL turns a member's advertised address into a base URL.
func baseURL(addr string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimSuffix(addr, "/")
	}
	return "http://" + addr
}

// CoordinatorURLs lists the coordinator nodes.
func (s *Stack) CoordinatorURLs() []string { return s.cfg.CoordinatorURLs }

// NodeStatus asks one node for its own view (GET /v1/cluster/node).
func (s *Stack) NodeStatus(ctx context.Context, coordinatorURL string) (console.NodeStatus, error) {
	var st console.NodeStatus
	_, _, err := s.do(ctx, "GET", coordinatorURL+"/v1/cluster/node", nil, nil, &st)
	return st, err
}

type membersAnswer struct {
	Version uint64 `json:"version"`
	Members []struct {
		Instance string `json:"instance"`
		Addr     string `json:"addr"`
	} `json:"members"`
	Ring []byte `json:"ring"`
}

// Membership reads a service's members and ring from the first coordinator
// that answers; stale=true lets a follower answer from its replica, so the
// ring stays visible while there is no leader.
func (s *Stack) Membership(ctx context.Context, service string) (console.Membership, error) {
	var errs []error
	for _, u := range s.cfg.CoordinatorURLs {
		var a membersAnswer
		_, _, err := s.do(ctx, "GET", u+"/v1/services/"+url.PathEscape(service)+"/members?stale=true", nil, nil, &a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m := console.Membership{Service: service, Version: a.Version}
		for _, mb := range a.Members {
			addr := baseURL(mb.Addr)
			if public, ok := s.cfg.InstanceURLs[mb.Instance]; ok {
				addr = strings.TrimRight(public, "/")
			}
			m.Instances = append(m.Instances, console.Instance{Name: mb.Instance, Addr: addr})
		}
		if len(a.Ring) > 0 {
			r, err := ring.Decode(a.Ring)
			if err != nil {
				return m, fmt.Errorf("decode %s ring: %w", service, err)
			}
			m.Ring = r
		}
		return m, nil
	}
	return console.Membership{Service: service}, errors.Join(errs...)
}

// idempotencyMetric is the idempotency middleware's decision counter, as
// the OpenTelemetry Prometheus exporter names it.
const idempotencyMetric = "payonce_idempotency_requests_total"

// The fence's refusals, as payments reports them on /metrics (no labels,
// so no customer id leaves the service): how many, when the last one was,
// the token it carried, and the higher token the fence held. A gauge is a
// float64: exact for tokens below 2^53, which Raft indexes stay under.
const (
	fenceRefusedMetric    = "payonce_payments_fenced_writes_total"
	fenceLastAtMetric     = "payonce_payments_fence_last_refusal_timestamp_seconds"
	fenceLastTokenMetric  = "payonce_payments_fence_last_refused_token"
	fenceFenceTokenMetric = "payonce_payments_fence_last_fence_token"
)

// Metrics reads the instance's /metrics: its idempotency decisions by
// outcome, and its fence refusals if it reports them.
func (s *Stack) Metrics(ctx context.Context, inst console.Instance) (console.InstanceMetrics, error) {
	resp, data, err := s.do(ctx, "GET", inst.Addr+"/metrics", nil, nil, nil)
	if err != nil {
		return console.InstanceMetrics{Idempotency: console.IdempotencyCounts{Instance: inst.Name}}, err
	}
	if resp.StatusCode != http.StatusOK {
		return console.InstanceMetrics{Idempotency: console.IdempotencyCounts{Instance: inst.Name}},
			fmt.Errorf("GET %s/metrics: %s", inst.Addr, resp.Status)
	}
	return ParseMetrics(inst.Name, data)
}

// ParseMetrics reads what the console shows from one instance's metrics in
// the Prometheus text format.
func ParseMetrics(instance string, data []byte) (console.InstanceMetrics, error) {
	m := console.InstanceMetrics{Idempotency: console.IdempotencyCounts{Instance: instance}}
	n := &m.Idempotency
	var fence console.FenceRefusals
	seenFence := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			continue
		}
		switch name {
		case idempotencyMetric:
			switch label(line, "outcome") {
			case "claimed", "resumed":
				n.First += int64(v)
			case "replayed":
				n.Replayed += int64(v)
			case "in_flight":
				n.InFlight += int64(v)
			case "mismatch":
				n.Mismatched += int64(v)
			}
		case fenceRefusedMetric:
			seenFence = true
			fence.Refused += int64(v)
		case fenceLastAtMetric:
			seenFence = true
			if v > 0 {
				fence.LastAt = time.UnixMilli(int64(v * 1000)).UTC()
			}
		case fenceLastTokenMetric:
			seenFence = true
			fence.LastToken = uint64(v)
		case fenceFenceTokenMetric:
			seenFence = true
			fence.FenceToken = uint64(v)
		}
	}
	if seenFence {
		fence.Instance = instance
		m.Fence = &fence
	}
	return m, sc.Err()
}

// label returns a label's value in one exposition-format sample line.
func label(line, name string) string {
	_, rest, ok := strings.Cut(line, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

// CustomerOrders lists a customer's ten latest orders.
func (s *Stack) CustomerOrders(ctx context.Context, addr, customerID string) ([]console.Order, error) {
	var a struct {
		Orders []console.Order `json:"orders"`
	}
	_, _, err := s.do(ctx, "GET", addr+"/v1/customers/"+url.PathEscape(customerID)+"/orders?limit=10", s.callerHeader(), nil, &a)
	return a.Orders, err
}

// CustomerPayments lists a customer's ten latest payments.
func (s *Stack) CustomerPayments(ctx context.Context, addr, customerID string) ([]console.Payment, error) {
	var a struct {
		Payments []console.Payment `json:"payments"`
	}
	_, _, err := s.do(ctx, "GET", addr+"/v1/customers/"+url.PathEscape(customerID)+"/payments?limit=10", s.callerHeader(), nil, &a)
	return a.Payments, err
}

// CreateOrder sends one create-order request and classifies the answer.
func (s *Stack) CreateOrder(ctx context.Context, addr, key, traceparent string, body []byte) (console.OrderReply, error) {
	h := s.callerHeader()
	h.Set("Idempotency-Key", key)
	if traceparent != "" {
		h.Set("Traceparent", traceparent)
	}
	resp, data, err := s.do(ctx, "POST", addr+"/v1/orders", h, body, nil)
	if err != nil {
		return console.OrderReply{}, err
	}
	var reply console.OrderReply
	switch resp.StatusCode {
	case http.StatusCreated:
		reply.Answer = console.AnswerFirst
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			reply.Answer = console.AnswerReplayed
		}
		if err := json.Unmarshal(data, &reply.Order); err != nil {
			return reply, fmt.Errorf("create order: %w", err)
		}
	case http.StatusConflict:
		reply.Answer = console.AnswerInFlight
	case http.StatusUnprocessableEntity:
		reply.Answer = console.AnswerMismatched
	default:
		reply.Answer = console.AnswerFailed
	}
	return reply, nil
}

// GetOrder reads one order.
func (s *Stack) GetOrder(ctx context.Context, addr, id string) (console.Order, error) {
	var o console.Order
	_, _, err := s.do(ctx, "GET", addr+"/v1/orders/"+url.PathEscape(id), s.callerHeader(), nil, &o)
	return o, err
}

// BankFaults reads the bank's fault switches.
func (s *Stack) BankFaults(ctx context.Context) (console.BankFaults, error) {
	var f console.BankFaults
	_, _, err := s.do(ctx, "GET", s.cfg.BankURL+"/admin/faults", nil, nil, &f)
	return f, err
}

// SetBankFaults replaces the bank's fault switches.
func (s *Stack) SetBankFaults(ctx context.Context, f console.BankFaults) error {
	body, err := json.Marshal(f)
	if err != nil {
		return err
	}
	var got console.BankFaults
	_, _, err = s.do(ctx, "PUT", s.cfg.BankURL+"/admin/faults", nil, body, &got)
	return err
}

// BankCaptures counts the bank's captures (of one payment, if reference is
// set). The ledger records effects only, never replays.
func (s *Stack) BankCaptures(ctx context.Context, reference string) (int, error) {
	q := url.Values{"kind": {"capture"}}
	if reference != "" {
		q.Set("reference", reference)
	}
	var a struct {
		Entries []json.RawMessage `json:"entries"`
	}
	_, _, err := s.do(ctx, "GET", s.cfg.BankURL+"/v1/ledger?"+q.Encode(), nil, nil, &a)
	return len(a.Entries), err
}

// Trace fetches one trace from TracesURL.
func (s *Stack) Trace(ctx context.Context, traceID string) ([]byte, error) {
	if s.cfg.TracesURL == "" {
		return nil, console.ErrNoTraces
	}
	resp, data, err := s.do(ctx, "GET", s.cfg.TracesURL+"/"+url.PathEscape(traceID), nil, nil, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, errs.E(errs.NotFound, "no such trace (yet: spans arrive a moment after the request)")
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("GET trace %s: %s", traceID, resp.Status)
	}
	return data, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
