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

// Split divides a handler from NewHandler into its public part (every
// route but the admin ones) and its admin part (only those), so the admin
// routes can be served on a listener of their own that only operators
// reach. Each part answers the other's routes 404, as if they did not exist.
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
		if !strings.HasPrefix(r.URL.Path, AdminPrefix) {
			notFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	return public, admin
}
