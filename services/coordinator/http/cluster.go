package http

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/go-kit/kit/endpoint"
	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
)

// Cluster is the membership of the Raft cluster itself, as the admin routes
// change it.
type Cluster interface {
	Leadership
	// AddVoter adds a node (id, Raft address) as a voter, or promotes a
	// nonvoter.
	AddVoter(id, addr string) error
	// AddNonvoter adds a node that receives the log but does not vote.
	AddNonvoter(id, addr string) error
	// Suffrage reports whether id is in the configuration and votes.
	Suffrage(id string) (member, voter bool, err error)
	// RemoveServer removes a node.
	RemoveServer(id string) error
	// Servers maps each server id to its Raft address.
	Servers() (map[string]string, error)
	// ID is this node's server id; RaftAddr the address peers dial.
	ID() string
	RaftAddr() string
	// Joining reports whether this node waits to be admitted (it started
	// with an empty data directory and no instruction to bootstrap) and
	// the incarnation it waits with.
	Joining() (bool, string)
	// Admit lets a joining node with that incarnation vote again; only the
	// leader can.
	Admit(ctx context.Context, id, incarnation string) error
}

// SelfPath is the route at which every node describes itself; it is never
// forwarded to the leader.
const SelfPath = "/v1/cluster/self"

// Self is a node's own view of its membership.
type Self struct {
	ID          string `json:"id"`
	RaftAddr    string `json:"raft_addr"`
	Joining     bool   `json:"joining"`
	Incarnation string `json:"incarnation,omitempty"`
	LeaderID    string `json:"leader_id,omitempty"`
}

func selfOf(c Cluster) Self {
	joining, inc := c.Joining()
	leader, _ := c.Leader()
	return Self{ID: c.ID(), RaftAddr: c.RaftAddr(), Joining: joining, Incarnation: inc, LeaderID: leader}
}

type voterRequest struct {
	ID   string `json:"id"`
	Addr string `json:"addr"`
}

type clusterResponse struct {
	LeaderID string            `json:"leader_id"`
	Servers  map[string]string `json:"servers"`
}

// NewClusterHandler serves the cluster admin routes:
//
//	GET    /v1/cluster              leader and servers
//	GET    /v1/cluster/self         this node: id, Raft address, joining (never forwarded)
//	POST   /v1/cluster/voters       add a voter {"id","addr"} and admit it if it is joining (204)
//	DELETE /v1/cluster/voters/{id}  remove a server (204)
//
// peers maps server ids to HTTP base URLs: adding a voter asks the node at
// its URL whether it is joining, and admits its incarnation.
//
// The routes that change the cluster need the operator's identity
// (policy.Admin); the ones that describe it answer coordinator nodes and
// the operator (policy.Peer).
func NewClusterHandler(c Cluster, peers map[string]string, peerClient *http.Client, logger *slog.Logger, policy coordinator.Policy, mw ...func(string) endpoint.Middleware) http.Handler {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint {
		for i := len(mw) - 1; i >= 0; i-- {
			e = mw[i](name)(e)
		}
		return e
	}
	opts := httpkit.ServerOptions(logger)
	mux := httpkit.NewMux() // names each server span after its route
	mux.Handle("GET /v1/cluster", guard(policy.Peer, kithttp.NewServer(
		wrap("coordinator.cluster", func(context.Context, any) (any, error) {
			servers, err := c.Servers()
			if err != nil {
				return nil, errs.Wrap(errs.Unavailable, "cluster configuration unavailable", err)
			}
			id, _ := c.Leader()
			return clusterResponse{LeaderID: id, Servers: servers}, nil
		}),
		func(context.Context, *http.Request) (any, error) { return nil, nil }, httpkit.EncodeJSON, opts...)))
	mux.Handle("GET "+SelfPath, guard(policy.Peer, kithttp.NewServer(
		wrap("coordinator.self", func(context.Context, any) (any, error) { return selfOf(c), nil }),
		func(context.Context, *http.Request) (any, error) { return nil, nil }, httpkit.EncodeJSON, opts...)))
	admitter := &Admitter{Cluster: c, Peers: peers, Client: peerClient, Logger: logger}
	mux.Handle("POST /v1/cluster/voters", guard(policy.Admin, kithttp.NewServer(
		wrap("coordinator.add_voter", func(ctx context.Context, req any) (any, error) {
			r := req.(voterRequest)
			if err := c.AddVoter(r.ID, r.Addr); err != nil {
				return nil, errs.Wrap(errs.Unavailable, "could not add voter", err)
			}
			// A node that lost its disk refuses to vote until admitted;
			// adding it back is the operator's word that it may.
			if err := admitter.admit(ctx, r.ID, false); err != nil {
				return nil, errs.Wrap(errs.Unavailable, "voter added; admitting it failed (retry the request)", err)
			}
			return noContent{}, nil
		}),
		func(_ context.Context, r *http.Request) (any, error) {
			var req voterRequest
			if err := httpkit.DecodeJSON(r, &req); err != nil {
				return nil, err
			}
			if f := coordinator.ValidateName("id", req.ID); f != nil {
				return nil, errs.E(errs.Invalid, "invalid voter").WithFields(*f)
			}
			if req.Addr == "" {
				return nil, errs.E(errs.Invalid, "invalid voter").WithFields(errs.FieldError{Field: "addr", Reason: "must not be empty"})
			}
			return req, nil
		}, httpkit.EncodeJSON, opts...)))
	mux.Handle("DELETE /v1/cluster/voters/{id}", guard(policy.Admin, kithttp.NewServer(
		wrap("coordinator.remove_server", func(_ context.Context, req any) (any, error) {
			if err := c.RemoveServer(req.(string)); err != nil {
				return nil, errs.Wrap(errs.Unavailable, "could not remove server", err)
			}
			return noContent{}, nil
		}),
		func(_ context.Context, r *http.Request) (any, error) { return pathName(r, "id") }, httpkit.EncodeJSON, opts...)))
	return mux
}

// guard serves next only to a caller allowed admits, before the body is
// even read; a refusal is problem+json from the one error encoder.
func guard(allowed func(context.Context) error, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := allowed(r.Context()); err != nil {
			httpkit.ErrorEncoder(r.Context(), err, w)
			return
		}
		next.ServeHTTP(w, r)
	})
}
