package http

import (
	"net/http"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
)

// NodeStatusPath is where a node answers with its own view of the cluster.
// It is served by the node that receives it, never forwarded to the leader:
// the point is to see how each node sees things, followers included.
const NodeStatusPath = "/v1/cluster/node"

// NodeStatusReader is a node that can report its own view of the cluster.
type NodeStatusReader interface {
	NodeStatus() coordinator.NodeStatus
}

// withNodeStatus serves GET NodeStatusPath from node before anything else
// sees the request (the forwarder would send it to the leader), and passes
// every other request to next. A cluster that cannot report its status gets
// no such route.
//
// Lock names, holders and tokens are shown only to those who may see them
// (coordinator.Policy.SeesLock: the operator, the console, a service for
// its own namespace), everyone else gets the count; the lease ids only to
// their holders, like GET of a lock (coordinator.Authorize). A lock's name
// can carry a caller's customer id, and its holder says which instance to
// attack.
func withNodeStatus(cluster Cluster, policy coordinator.Policy, next http.Handler) http.Handler {
	node, ok := cluster.(NodeStatusReader)
	if !ok {
		return next
	}
	// A plain check rather than a mux with a catch-all route, which would
	// set every request's Pattern to "/" and rename its server span.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == NodeStatusPath {
			if err := policy.Authenticated(r.Context()); err != nil {
				httpkit.ErrorEncoder(r.Context(), err, w)
				return
			}
			caller, _ := coordinator.CallerFrom(r.Context())
			_ = httpkit.EncodeJSON(r.Context(), w, nodeStatusResponseOf(node.NodeStatus(), caller, policy))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// nodeStatusResponse is coordinator.NodeStatus with its locks as the lock
// API shows them (remaining_ms, ttl_ms: the domain type keeps durations out
// of JSON).
type nodeStatusResponse struct {
	coordinator.NodeStatus
	Locks []lockResponse `json:"locks"`
}

func nodeStatusResponseOf(st coordinator.NodeStatus, caller coordinator.Caller, policy coordinator.Policy) nodeStatusResponse {
	out := nodeStatusResponse{NodeStatus: st, Locks: make([]lockResponse, 0, len(st.Locks))}
	for _, l := range st.Locks {
		if !policy.SeesLock(caller, l.Name) {
			continue
		}
		lr := lockResponse{Name: l.Name, Waiters: l.Waiters}
		if l.Holder != nil {
			h := leaseResponseOf(*l.Holder)
			if l.Holder.Holder != caller.String() {
				h.LeaseID = ""
			}
			lr.Holder = &h
		}
		out.Locks = append(out.Locks, lr)
	}
	return out
}
