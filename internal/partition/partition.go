// Package partition routes a request about a customer to the instance
// that owns the customer on the ring: it serves it here if this instance is
// the owner, and otherwise forwards it, once, to the owner.
//
// Forwarding is loop-proof: a forwarded request carries ForwardedHeader and
// is always served where it lands, so a request makes at most one hop even
// while two instances disagree about the ring for a moment. Only a peer may
// say "forwarded": the header must come with ForwardSignatureHeader, an
// HMAC over the forwarder and the request under a secret the instances
// share. A client that sends the header itself has it dropped at the edge
// and is routed like any request. With instance identities, peers also
// reach each other only on a mutual-TLS internal listener (Edge,
// PeersOnly; docs/security.md), and the signature stays as a second
// check. If the owner
// cannot be reached (it just died, and the ring has not caught up yet), the
// request is served here: ownership is for locality, the fencing locks are
// for safety, so availability wins.
package partition

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/internal/membership"
)

// ForwardedHeader marks a forwarded request with the instance that
// forwarded it.
const ForwardedHeader = "Payonce-Forwarded-By"

// ForwardSignatureHeader proves ForwardedHeader came from a peer.
const ForwardSignatureHeader = "Payonce-Forward-Signature"

// Signature is the HMAC of a forwarded request, sent as
// ForwardSignatureHeader: who forwarded it, the method, the target and the
// body, so a signature cannot be moved to another request. (Exported for
// the tests that play an attacker holding the secret.)
func Signature(secret []byte, from string, r *http.Request, body []byte) string {
	m := hmac.New(sha256.New, secret)
	bodySum := sha256.Sum256(body)
	for _, f := range []string{from, r.Method, r.URL.RequestURI(), hex.EncodeToString(bodySum[:])} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// KeyFunc returns the partition key (the customer id) of a request, and
// false when the request has none (it is then served here). It may read the
// body: Router restores it.
type KeyFunc func(r *http.Request, body []byte) (string, bool)

// Owners answers who owns a key.
type Owners interface {
	Self() membership.Member
	Owner(key string) (membership.Member, bool)
}

// Router forwards requests to their owners.
type Router struct {
	Owners    Owners
	Transport http.RoundTripper
	Logger    *slog.Logger
	// MaxBody bounds the body read to find the key.
	MaxBody int64
	// Secret signs forwarded requests and checks the ones that arrive;
	// every instance of the service shares it. With none, no forwarded
	// header is trusted.
	Secret []byte
}

// Wrap returns next behind ownership routing; keyOf finds a request's key.
func (rt Router) Wrap(keyOf KeyFunc, next http.Handler) http.Handler {
	logger := rt.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		var body []byte
		if r.Body != nil {
			var err error
			body, err = io.ReadAll(io.LimitReader(r.Body, rt.MaxBody+1))
			if err != nil {
				r.Header.Del(ForwardedHeader)
				r.Header.Del(ForwardSignatureHeader)
				next.ServeHTTP(w, r) // let the handler report the read error
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		if from := r.Header.Get(ForwardedHeader); from != "" {
			sig := r.Header.Get(ForwardSignatureHeader)
			if len(rt.Secret) > 0 && hmac.Equal([]byte(sig), []byte(Signature(rt.Secret, from, r, body))) {
				span.SetAttributes(attribute.String("partition.forwarded_by", from))
				next.ServeHTTP(w, r)
				return
			}
			// Not from a peer: drop the claim, route like any request.
			span.SetAttributes(attribute.Bool("partition.forged_forward_dropped", true))
		}
		r.Header.Del(ForwardedHeader)
		r.Header.Del(ForwardSignatureHeader)
		key, ok := keyOf(r, body)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		owner, known := rt.Owners.Owner(key)
		self := rt.Owners.Self()
		span.SetAttributes(attribute.String("partition.key", key), attribute.String("partition.owner", owner.Instance))
		if !known || owner.Instance == self.Instance || owner.Addr == "" {
			next.ServeHTTP(w, r)
			return
		}
		target, err := url.Parse(owner.Addr)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		forwardFailed := false
		proxy := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host
				pr.Out.Header.Set(ForwardedHeader, self.Instance)
				pr.Out.Header.Set(ForwardSignatureHeader, Signature(rt.Secret, self.Instance, pr.In, body))
				pr.Out.Body = io.NopCloser(bytes.NewReader(body))
				pr.Out.ContentLength = int64(len(body))
			},
			Transport: rt.Transport,
			ModifyResponse: func(res *http.Response) error {
				// Say who forwarded, beside the owner's own instance header.
				res.Header.Set(ForwardedHeader, self.Instance)
				return nil
			},
			ErrorHandler: func(http.ResponseWriter, *http.Request, error) {
				forwardFailed = true
			},
		}
		// The owner names itself in the response; drop this instance's name
		// so the client sees one, the owner's.
		w.Header().Del(httpkit.InstanceHeader)
		span.SetAttributes(attribute.Bool("partition.forwarded", true))
		proxy.ServeHTTP(w, r)
		if forwardFailed {
			// Nothing was written: the owner was not reached. Serve here.
			w.Header().Set(httpkit.InstanceHeader, self.Instance)
			logger.WarnContext(r.Context(), "owner unreachable; serving here", "owner", owner.Instance, "key", key)
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
		}
	})
}
