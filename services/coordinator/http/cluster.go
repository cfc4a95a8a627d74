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
	// AddVoter adds a node (id, Raft address) as a voter.
	AddVoter(id, addr string) error
	// RemoveServer removes a node.
	RemoveServer(id string) error
	// Servers maps each server id to its Raft address.
	Servers() (map[string]string, error)
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
//	POST   /v1/cluster/voters       add a voter {"id","addr"} (204)
//	DELETE /v1/cluster/voters/{id}  remove a server (204)
func NewClusterHandler(c Cluster, logger *slog.Logger, mw ...func(string) endpoint.Middleware) http.Handler {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint {
		for i := len(mw) - 1; i >= 0; i-- {
			e = mw[i](name)(e)
		}
		return e
	}
	opts := httpkit.ServerOptions(logger)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/cluster", kithttp.NewServer(
		wrap("coordinator.cluster", func(context.Context, any) (any, error) {
			servers, err := c.Servers()
			if err != nil {
				return nil, errs.Wrap(errs.Unavailable, "cluster configuration unavailable", err)
			}
			id, _ := c.Leader()
			return clusterResponse{LeaderID: id, Servers: servers}, nil
		}),
		func(context.Context, *http.Request) (any, error) { return nil, nil }, httpkit.EncodeJSON, opts...))
	mux.Handle("POST /v1/cluster/voters", kithttp.NewServer(
		wrap("coordinator.add_voter", func(_ context.Context, req any) (any, error) {
			r := req.(voterRequest)
			if err := c.AddVoter(r.ID, r.Addr); err != nil {
				return nil, errs.Wrap(errs.Unavailable, "could not add voter", err)
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
		}, httpkit.EncodeJSON, opts...))
	mux.Handle("DELETE /v1/cluster/voters/{id}", kithttp.NewServer(
		wrap("coordinator.remove_server", func(_ context.Context, req any) (any, error) {
			if err := c.RemoveServer(req.(string)); err != nil {
				return nil, errs.Wrap(errs.Unavailable, "could not remove server", err)
			}
			return noContent{}, nil
		}),
		func(_ context.Context, r *http.Request) (any, error) { return pathName(r, "id") }, httpkit.EncodeJSON, opts...))
	return mux
}
