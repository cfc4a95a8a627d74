package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/httpkit"
)

// TypeTokenRequired names the problem of a request to a console that asks
// for a token and did not get the right one (docs/problems.md);
// TokenRequiredType is its full URI.
const (
	TypeTokenRequired = "console-token-required"
	TokenRequiredType = httpkit.ProblemTypeBase + TypeTokenRequired
)

// RequireToken answers only requests that carry token: as the password of
// HTTP Basic authentication (any user name: a browser asks for it once and
// sends it with every request of the page, the event stream included) or
// as "Authorization: Bearer <token>" (curl, scripts). Anything else gets
// 401 with a Basic challenge before the page or the API sees it.
//
// Outside dev mode the console must have one (CONSOLE_TOKEN or
// CONSOLE_TOKEN_FILE): its view is every lock, holder and fencing token the
// coordinator shows the console's certificate, which the coordinator itself
// shows no caller but the operator. In dev mode, on a laptop's loopback,
// the stack's own dev mode is the credential and no token is asked for.
//
// The comparison is of SHA-256 digests in constant time, so neither the
// token's bytes nor its length leak through timing.
func RequireToken(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := presentedToken(r)
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="payonce console", charset="UTF-8"`)
			httpkit.WriteProblem(w, httpkit.Problem{
				Type: TokenRequiredType, Title: http.StatusText(http.StatusUnauthorized), Status: http.StatusUnauthorized,
				Detail: "this console asks for its token (CONSOLE_TOKEN): as the password of HTTP Basic authentication, any user name, or as a Bearer token",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func presentedToken(r *http.Request) (string, bool) {
	if _, password, ok := r.BasicAuth(); ok {
		return password, true
	}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(bearer), true
	}
	return "", false
}
