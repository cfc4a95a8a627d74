package http

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	kithttp "github.com/go-kit/kit/transport/http"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/coordinator"
)

// MaxLongPoll caps how long a members long poll may block.
const MaxLongPoll = 60 * time.Second

// NewHandler serves the coordinator API:
//
//	POST   /v1/locks/{lock}/leases                     acquire (201 lease; 409 lock-held)
//	POST   /v1/locks/{lock}/leases/{lease}/keepalive   keepalive (200 lease; 409 lease-not-held)
//	DELETE /v1/locks/{lock}/leases/{lease}             release (204)
//	GET    /v1/locks/{lock}[?stale=true]               lock state (200; 404 lock-not-found)
//	POST   /v1/leases/keepalive                        renew many leases in one write (batch.go)
//	PUT    /v1/services/{service}/members/{instance}   register (200 member)
//	POST   /v1/services/{service}/members/{instance}/heartbeat (204)
//	DELETE /v1/services/{service}/members/{instance}   deregister (204)
//	GET    /v1/services/{service}/members[?wait_version=N&timeout_ms=M&stale=true]
func NewHandler(e Endpoints, logger *slog.Logger) http.Handler {
	opts := httpkit.ServerOptions(logger)
	mux := httpkit.NewMux() // names each server span after its route
	mux.Handle("POST /v1/locks/{lock}/leases", kithttp.NewServer(e.Acquire, decodeAcquire, httpkit.EncodeJSON, opts...))
	mux.Handle("POST /v1/locks/{lock}/leases/{lease}/keepalive", kithttp.NewServer(e.KeepAlive, decodeLeaseRef, httpkit.EncodeJSON, opts...))
	mux.Handle("DELETE /v1/locks/{lock}/leases/{lease}", kithttp.NewServer(e.Release, decodeLeaseRef, httpkit.EncodeJSON, opts...))
	mux.Handle("GET /v1/locks/{lock}", kithttp.NewServer(e.GetLock, decodeLockRef, httpkit.EncodeJSON, opts...))
	mux.Handle("POST "+KeepAliveBatchPath, kithttp.NewServer(e.KeepAliveBatch, decodeKeepAliveBatch, httpkit.EncodeJSON, opts...))
	mux.Handle("PUT /v1/services/{service}/members/{instance}", kithttp.NewServer(e.Register, decodeRegister, httpkit.EncodeJSON, opts...))
	mux.Handle("POST /v1/services/{service}/members/{instance}/heartbeat", kithttp.NewServer(e.Heartbeat, decodeMemberRef, httpkit.EncodeJSON, opts...))
	mux.Handle("DELETE /v1/services/{service}/members/{instance}", kithttp.NewServer(e.Deregister, decodeMemberRef, httpkit.EncodeJSON, opts...))
	mux.Handle("GET /v1/services/{service}/members", kithttp.NewServer(e.Members, decodeMembers, httpkit.EncodeJSON, opts...))
	return mux
}

func pathName(r *http.Request, field string) (string, error) {
	v := r.PathValue(field)
	if f := coordinator.ValidateName(field, v); f != nil {
		return "", errs.E(errs.Invalid, "invalid "+field).WithFields(*f)
	}
	return v, nil
}

// millis converts a client's millisecond count to a duration, refusing
// values that would overflow instead of wrapping into a plausible TTL.
func millis(field string, ms int64, maxD time.Duration) (time.Duration, error) {
	if ms < 0 || ms > maxD.Milliseconds() {
		return 0, errs.E(errs.Invalid, "invalid "+field).WithFields(errs.FieldError{Field: field, Reason: "must be between 0 and " + strconv.FormatInt(maxD.Milliseconds(), 10)})
	}
	return time.Duration(ms) * time.Millisecond, nil
}

func decodeAcquire(_ context.Context, r *http.Request) (any, error) {
	var req acquireRequest
	if err := httpkit.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var err error
	if req.lock, err = pathName(r, "lock"); err != nil {
		return nil, err
	}
	if _, err := millis("ttl_ms", req.TTLMillis, coordinator.MaxTTL); err != nil {
		return nil, err
	}
	if _, err := millis("wait_ms", req.WaitMillis, coordinator.MaxWait); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeLeaseRef(_ context.Context, r *http.Request) (any, error) {
	lock, err := pathName(r, "lock")
	if err != nil {
		return nil, err
	}
	lease := r.PathValue("lease")
	if lease == "" || len(lease) > 64 {
		return nil, errs.E(errs.Invalid, "invalid lease id").WithFields(errs.FieldError{Field: "lease", Reason: "must be 1-64 characters"})
	}
	return leaseRef{lock: lock, leaseID: lease}, nil
}

func stale(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("stale")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errs.E(errs.Invalid, "invalid stale").WithFields(errs.FieldError{Field: "stale", Reason: "must be true or false"})
	}
	return b, nil
}

func decodeLockRef(_ context.Context, r *http.Request) (any, error) {
	lock, err := pathName(r, "lock")
	if err != nil {
		return nil, err
	}
	s, err := stale(r)
	if err != nil {
		return nil, err
	}
	return lockRef{lock: lock, stale: s}, nil
}

func decodeRegister(_ context.Context, r *http.Request) (any, error) {
	var req registerRequest
	if err := httpkit.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	var err error
	if req.service, err = pathName(r, "service"); err != nil {
		return nil, err
	}
	if req.instance, err = pathName(r, "instance"); err != nil {
		return nil, err
	}
	if _, err := millis("ttl_ms", req.TTLMillis, coordinator.MaxTTL); err != nil {
		return nil, err
	}
	return req, nil
}

func decodeMemberRef(_ context.Context, r *http.Request) (any, error) {
	svc, err := pathName(r, "service")
	if err != nil {
		return nil, err
	}
	inst, err := pathName(r, "instance")
	if err != nil {
		return nil, err
	}
	return memberRef{service: svc, instance: inst}, nil
}

func decodeMembers(_ context.Context, r *http.Request) (any, error) {
	svc, err := pathName(r, "service")
	if err != nil {
		return nil, err
	}
	req := membersRequest{service: svc, timeout: 30 * time.Second}
	q := r.URL.Query()
	if v := q.Get("wait_version"); v != "" {
		if req.waitVersion, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, errs.E(errs.Invalid, "invalid wait_version").WithFields(errs.FieldError{Field: "wait_version", Reason: "must be a non-negative integer"})
		}
	}
	if v := q.Get("timeout_ms"); v != "" {
		ms, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			ms = -1
		}
		if req.timeout, err = millis("timeout_ms", ms, MaxLongPoll); err != nil {
			return nil, err
		}
	}
	if req.stale, err = stale(r); err != nil {
		return nil, err
	}
	return req, nil
}
