package http

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/payonce/payonce/services/coordinator"
)

// Endpoints holds one go-kit endpoint per coordinator operation.
type Endpoints struct {
	Acquire    endpoint.Endpoint
	KeepAlive  endpoint.Endpoint
	Release    endpoint.Endpoint
	GetLock    endpoint.Endpoint
	Register   endpoint.Endpoint
	Heartbeat  endpoint.Endpoint
	Deregister endpoint.Endpoint
	Members    endpoint.Endpoint
	// KeepAliveBatch renews many leases in one write (batch.go).
	KeepAliveBatch endpoint.Endpoint
}

// NewEndpoints wraps svc; every endpoint gets the given middlewares, the
// first one outermost.
func NewEndpoints(svc coordinator.Service, mw ...func(name string) endpoint.Middleware) Endpoints {
	wrap := func(name string, e endpoint.Endpoint) endpoint.Endpoint {
		for i := len(mw) - 1; i >= 0; i-- {
			e = mw[i](name)(e)
		}
		return e
	}
	return Endpoints{
		KeepAliveBatch: wrap("coordinator.keepalive_batch", makeKeepAliveBatch(svc)),
		Acquire: wrap("coordinator.acquire", func(ctx context.Context, req any) (any, error) {
			r := req.(acquireRequest)
			l, err := svc.Acquire(ctx, coordinator.AcquireRequest{
				Lock: r.lock, Owner: r.Owner, RequestID: r.RequestID, Attempt: r.Attempt,
				TTL: time.Duration(r.TTLMillis) * time.Millisecond, Wait: time.Duration(r.WaitMillis) * time.Millisecond,
			})
			if err != nil {
				return nil, err
			}
			return created{leaseResponseOf(l)}, nil
		}),
		KeepAlive: wrap("coordinator.keepalive", func(ctx context.Context, req any) (any, error) {
			r := req.(leaseRef)
			l, err := svc.KeepAlive(ctx, r.lock, r.leaseID)
			if err != nil {
				return nil, err
			}
			return leaseResponseOf(l), nil
		}),
		Release: wrap("coordinator.release", func(ctx context.Context, req any) (any, error) {
			r := req.(leaseRef)
			return noContent{}, svc.Release(ctx, r.lock, r.leaseID)
		}),
		GetLock: wrap("coordinator.get_lock", func(ctx context.Context, req any) (any, error) {
			r := req.(lockRef)
			l, err := svc.Lock(ctx, r.lock, coordinator.ReadOptions{Stale: r.stale})
			if err != nil {
				return nil, err
			}
			out := lockResponse{Name: l.Name, Waiters: l.Waiters}
			if l.Holder != nil {
				h := leaseResponseOf(*l.Holder)
				out.Holder = &h
			}
			return out, nil
		}),
		Register: wrap("coordinator.register", func(ctx context.Context, req any) (any, error) {
			r := req.(registerRequest)
			m, err := svc.Register(ctx, coordinator.Member{Service: r.service, Instance: r.instance, Addr: r.Addr, TTL: time.Duration(r.TTLMillis) * time.Millisecond})
			if err != nil {
				return nil, err
			}
			return memberResponseOf(m), nil
		}),
		Heartbeat: wrap("coordinator.heartbeat", func(ctx context.Context, req any) (any, error) {
			r := req.(memberRef)
			return noContent{}, svc.Heartbeat(ctx, r.service, r.instance)
		}),
		Deregister: wrap("coordinator.deregister", func(ctx context.Context, req any) (any, error) {
			r := req.(memberRef)
			return noContent{}, svc.Deregister(ctx, r.service, r.instance)
		}),
		Members: wrap("coordinator.members", func(ctx context.Context, req any) (any, error) {
			r := req.(membersRequest)
			if r.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, r.timeout)
				defer cancel()
			}
			ms, err := svc.Members(ctx, r.service, r.waitVersion, coordinator.ReadOptions{Stale: r.stale})
			if err != nil {
				return nil, err
			}
			out := membersResponse{Service: ms.Service, Version: ms.Version, Members: []memberResponse{}, Ring: ms.Ring}
			if ms.Ring != nil {
				out.RingFingerprint = fmt.Sprintf("%016x", ms.RingFingerprint)
			}
			for _, m := range ms.Members {
				out.Members = append(out.Members, memberResponseOf(m))
			}
			return out, nil
		}),
	}
}
