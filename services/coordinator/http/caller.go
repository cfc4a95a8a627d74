package http

import (
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/identity"
	"github.com/payonce/payonce/services/coordinator"
)

// CallerHeader carries, on a request a follower forwards to the leader, the
// identity the follower authenticated: the leader sees the follower's
// certificate on the hop, and authorises the original caller instead. The
// leader believes the header only from a coordinator node's certificate;
// anyone else sending it is ignored.
const CallerHeader = "Coordinator-Caller"

// callerOf is the identity r proved: its client certificate's, or, on a
// request forwarded by another coordinator node, the one that node vouches
// for. The zero Caller means none (no TLS, or no certificate).
func callerOf(r *http.Request) coordinator.Caller {
	id, err := identity.Caller(r)
	if err != nil {
		return coordinator.Caller{}
	}
	if id.Service == identity.Coordinator && r.Header.Get(ForwardedHeader) != "" {
		service, instance, ok := strings.Cut(r.Header.Get(CallerHeader), "/")
		if !ok {
			return coordinator.Caller{}
		}
		vouched := identity.ID{Service: service, Instance: instance}
		if vouched.Validate() != nil {
			return coordinator.Caller{}
		}
		return coordinator.Caller{Service: vouched.Service, Instance: vouched.Instance}
	}
	return coordinator.Caller{Service: id.Service, Instance: id.Instance}
}

// withCaller puts the request's caller into its context (coordinator.
// WithCaller), where the authorisation rules and the Raft commands read it.
// It runs before the forwarder, which passes the caller on to the leader.
func withCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(coordinator.WithCaller(r.Context(), callerOf(r))))
	})
}
