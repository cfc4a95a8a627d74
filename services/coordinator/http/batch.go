package http

import (
	"context"
	"net/http"

	"github.com/go-kit/kit/endpoint"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
	"github.com/payonce/payonce/services/coordinator/fsm"
)

// KeepAliveBatchPath renews many leases in one request and one Raft entry:
//
//	POST /v1/leases/keepalive {"leases":[{"lock":"...","lease_id":"..."}, ...]}
//	200 {"leases":[{"lock":"...","lease":{...}} | {"lock":"...","error":{type,detail}}, ...]}
//
// Every lease gets its own outcome, in the order asked; a malformed batch is
// a 400 and renews nothing. It sits beside the /v1/locks routes and is
// forwarded to the leader like them.
const KeepAliveBatchPath = "/v1/leases/keepalive"

// keepAliveBatchRequest is the body of POST KeepAliveBatchPath.
type keepAliveBatchRequest struct {
	Leases []batchLeaseRef `json:"leases"`
}

type batchLeaseRef struct {
	Lock    string `json:"lock"`
	LeaseID string `json:"lease_id"`
}

// batchItemResponse is one lease's outcome: Lease when renewed, Error when
// not (the problem a single keepalive would have answered).
type batchItemResponse struct {
	Lock  string         `json:"lock"`
	Lease *LeaseResponse `json:"lease,omitempty"`
	Error *batchProblem  `json:"error,omitempty"`
}

type batchProblem struct {
	Type   string `json:"type"`
	Detail string `json:"detail"`
}

type keepAliveBatchResponse struct {
	Leases []batchItemResponse `json:"leases"`
}

func decodeKeepAliveBatch(_ context.Context, r *http.Request) (any, error) {
	var req keepAliveBatchRequest
	if err := httpkit.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	refs := make([]fsm.LeaseRef, len(req.Leases))
	for i, l := range req.Leases {
		refs[i] = fsm.LeaseRef{Lock: l.Lock, LeaseID: l.LeaseID}
	}
	// Refused here too, so a bad batch costs no proposal.
	if err := fsm.ValidateBatch(refs); err != nil {
		return nil, err
	}
	return req, nil
}

// makeKeepAliveBatch is the endpoint behind KeepAliveBatchPath.
func makeKeepAliveBatch(svc coordinator.BatchRenewer) endpoint.Endpoint {
	return func(ctx context.Context, req any) (any, error) {
		r := req.(keepAliveBatchRequest)
		refs := make([]coordinator.LeaseRef, len(r.Leases))
		for i, l := range r.Leases {
			refs[i] = coordinator.LeaseRef{Lock: l.Lock, LeaseID: l.LeaseID}
		}
		renewals, err := svc.KeepAliveBatch(ctx, refs)
		if err != nil {
			return nil, err
		}
		out := keepAliveBatchResponse{Leases: make([]batchItemResponse, len(renewals))}
		for i, rn := range renewals {
			item := batchItemResponse{Lock: refs[i].Lock}
			switch {
			case rn.Err != nil:
				p := batchProblem{Type: "internal", Detail: rn.Err.Error()}
				if e := errs.As(rn.Err); e != nil {
					p = batchProblem{Type: e.Type, Detail: e.Detail}
					if p.Type == "" {
						p.Type = e.Kind.String()
					}
				}
				item.Error = &p
			case rn.Lease != nil:
				l := leaseResponseOf(*rn.Lease)
				item.Lease = &l
			}
			out.Leases[i] = item
		}
		return out, nil
	}
}
