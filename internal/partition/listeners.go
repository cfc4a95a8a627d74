package partition

import (
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/identity"
)

// InternalPrefix starts the paths of the routes that only other instances
// of the service call (payments' hand-over routes, /internal/v1/...).
const InternalPrefix = "/internal/"

// With an identity, an instance has two listeners (docs/security.md):
//
//   - the public one, plain HTTP for API callers (the README's curl
//     commands), wrapped in Edge: it refuses the peer-only routes and drops
//     any claim that a request was forwarded;
//   - the internal one, mutual TLS admitting only instances of the same
//     service (identity.ServerConfig with AllowServices), wrapped in
//     PeersOnly: it serves forwarded requests and the internal routes and
//     nothing else. It is the address the instance registers in the
//     coordinator's membership, so a peer forwards there.
//
// A caller's bearer key and card number then cross the network between
// instances only inside TLS, to a peer that proved it is one, and nobody
// without a certificate of the service can use the hand-over routes, even
// with the peer API key or INTERNAL_SECRET. The forwarding signature and
// the peer key stay as a second check (defence in depth).

// Edge wraps the public listener's handler when the instance also has an
// internal listener: the peer-only routes (peerPaths, e.g. payments'
// hand-overs) answer 404, as if they did not exist, and ForwardedHeader and
// ForwardSignatureHeader are dropped, so a request arriving here is always
// routed to its owner like any other. Other /internal/ routes that another
// service calls with its API key (orders' reconciliation read at payments)
// stay on the public listener.
func Edge(next http.Handler, peerPaths ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range peerPaths {
			if r.URL.Path == p {
				httpkit.ErrorEncoder(r.Context(), errs.E(errs.NotFound, "no such route"), w)
				return
			}
		}
		r.Header.Del(ForwardedHeader)
		r.Header.Del(ForwardSignatureHeader)
		next.ServeHTTP(w, r)
	})
}

// PeersOnly wraps the internal listener's handler: it serves requests from
// instances of service only (the TLS handshake already admits no one else;
// this is the same rule where the request is read), and of those only
// forwarded requests and the internal routes. Anything else is 403: an API
// caller belongs on the public listener.
func PeersOnly(service string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer, err := identity.Caller(r)
		if err != nil || peer.Service != service {
			httpkit.ErrorEncoder(r.Context(), errs.E(errs.Forbidden, "only "+service+" instances may call this listener"), w)
			return
		}
		if !strings.HasPrefix(r.URL.Path, InternalPrefix) && r.Header.Get(ForwardedHeader) == "" {
			httpkit.ErrorEncoder(r.Context(), errs.E(errs.Forbidden, "this listener serves forwarded requests only; call the public API"), w)
			return
		}
		next.ServeHTTP(w, r)
	})
}
