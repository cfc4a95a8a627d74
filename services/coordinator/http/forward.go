package http

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
)

// ForwardedHeader marks a request a follower has already forwarded, so it is
// never forwarded twice (two nodes that each think the other leads would
// otherwise bounce it between them).
const ForwardedHeader = "Coordinator-Forwarded"

// LeaderHeader carries the leader's HTTP base URL on a 503 not-leader answer
// and on every answer a follower forwarded.
const LeaderHeader = "Coordinator-Leader"

// Leadership tells whether this node leads and who does.
type Leadership interface {
	IsLeader() bool
	// Leader returns the leader's Raft server id, or "" if unknown.
	Leader() (id, raftAddr string)
}

// Forwarder sends requests that need the leader to the leader.
type Forwarder struct {
	// Transport carries the forwarded requests (nil: http.DefaultTransport);
	// set it before the first request.
	Transport http.RoundTripper

	node  Leadership
	peers map[string]string // Raft server id -> HTTP base URL
	mu    sync.Mutex
	proxy map[string]*httputil.ReverseProxy
}

// NewForwarder returns a forwarder; peers maps each node's Raft id to its
// HTTP base URL ("http://127.0.0.1:8101").
func NewForwarder(node Leadership, peers map[string]string) *Forwarder {
	return &Forwarder{node: node, peers: peers, proxy: map[string]*httputil.ReverseProxy{}}
}

// needsLeader reports whether r must be served by the leader: every write,
// and every read that did not ask for stale data.
func needsLeader(r *http.Request) bool {
	if !strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == SelfPath {
		return false
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("stale") != "true"
	}
	return true
}

// Wrap forwards leader-only requests that reach a follower.
func (f *Forwarder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !needsLeader(r) || f.node.IsLeader() {
			next.ServeHTTP(w, r)
			return
		}
		id, _ := f.node.Leader()
		base := f.peers[id]
		if base == "" || r.Header.Get(ForwardedHeader) != "" {
			if base != "" {
				w.Header().Set(LeaderHeader, base)
			}
			httpkit.ErrorEncoder(r.Context(), coordinator.ErrNotLeader, w)
			return
		}
		p, err := f.proxyFor(base)
		if err != nil {
			httpkit.ErrorEncoder(r.Context(), coordinator.ErrNotLeader, w)
			return
		}
		r.Header.Set(ForwardedHeader, "1")
		// The leader authorises the caller this node authenticated, not
		// this node; whatever the client put in the header is replaced.
		r.Header.Del(CallerHeader)
		if c, _ := coordinator.CallerFrom(r.Context()); c != (coordinator.Caller{}) {
			r.Header.Set(CallerHeader, c.String())
		}
		p.ServeHTTP(w, r)
	})
}

func (f *Forwarder) proxyFor(base string) (*httputil.ReverseProxy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.proxy[base]; p != nil {
		return p, nil
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	p := httputil.NewSingleHostReverseProxy(u)
	// A client span around the hop, whose context the leader continues, so
	// the leader's work nests under this node's in the trace.
	transport := f.Transport
	if transport == nil {
		transport = http.DefaultTransport
	}
	p.Transport = otelhttp.NewTransport(transport,
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return "forward to leader " + r.Method }))
	p.ModifyResponse = func(resp *http.Response) error {
		// Tell the client who leads so that its next call goes there
		// directly instead of through this extra hop.
		resp.Header.Set(LeaderHeader, base)
		return nil
	}
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// The leader we knew of is unreachable: an election is probably
		// under way. The client retries (acquire is idempotent).
		httpkit.ErrorEncoder(r.Context(), coordinator.ErrNotLeader, w)
	}
	f.proxy[base] = p
	return p, nil
}
