package http

import (
	"net"
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/httpkit"
)

// TypeHostNotAllowed names the problem of a request whose Host the console
// does not answer (docs/problems.md); HostNotAllowedType is its full URI.
const (
	TypeHostNotAllowed = "console-host-not-allowed"
	HostNotAllowedType = httpkit.ProblemTypeBase + TypeHostNotAllowed
)

// AllowHosts answers only requests whose Host header names the console as
// it is meant to be reached: a loopback address or "localhost", or one of
// names (CONSOLE_ALLOWED_HOSTS, host names without ports). Everything else
// is refused with 421 before the page or the API sees it.
//
// This is the defence against DNS rebinding: a web page on an attacker's
// name that re-resolves to 127.0.0.1 is same-origin with the console in the
// browser, so it could read the view (every lock, holder and token the
// coordinator shows the console) and, in dev mode, send the actions; its
// requests still carry the attacker's name in Host, which this refuses.
func AllowHosts(names []string, next http.Handler) http.Handler {
	allowed := map[string]bool{}
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSpace(n)); n != "" {
			allowed[n] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, allowed) {
			httpkit.WriteProblem(w, httpkit.Problem{
				Type: HostNotAllowedType, Title: http.StatusText(http.StatusMisdirectedRequest), Status: http.StatusMisdirectedRequest,
				Detail: "the console answers only requests to a loopback address, localhost or a name in CONSOLE_ALLOWED_HOSTS",
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func hostAllowed(hostport string, allowed map[string]bool) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		return false
	}
	if host == "localhost" || allowed[host] {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
