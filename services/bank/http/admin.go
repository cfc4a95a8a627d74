package http

import (
	"net/http"
	"strings"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
)

// AdminPrefix starts the paths of the bank's admin routes (the fault
// switches).
const AdminPrefix = "/admin/"

// LedgerPath is the simulator's ledger: what the bank really charged and
// refunded, the evidence the README and the tests read ("charged once").
const LedgerPath = "/v1/ledger"

// Split divides a handler from NewHandler into its public part (every
// route but the admin ones) and its admin part (the admin routes and the
// ledger), so the admin routes can be served on a listener of their own
// that only operators reach. The public part answers the admin routes 404,
// as if they did not exist, and the admin part the payment API. The ledger
// is read-only and served by both: when the payment API is mutual TLS
// (payments instances only), an operator still reads it on the admin
// listener.
func Split(h http.Handler) (public, admin http.Handler) {
	notFound := func(w http.ResponseWriter, r *http.Request) {
		httpkit.ErrorEncoder(r.Context(), errs.E(errs.NotFound, "no such route"), w)
	}
	public = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, AdminPrefix) {
			notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, AdminPrefix) && r.URL.Path != LedgerPath {
			notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	return public, admin
}
