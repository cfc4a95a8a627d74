// Package http serves the console: the page (HTML, CSS and JavaScript
// embedded from assets/, plain files with no build step), the current view
// as JSON, a server-sent event stream of every new view, the ring lookup,
// and the actions, each refused with 403 unless the console runs in dev
// mode.
package http

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"time"

	"github.com/payonce/payonce/internal/errs"
	"github.com/payonce/payonce/internal/httpkit"
	"github.com/payonce/payonce/services/console"
)

//go:embed assets
var assets embed.FS

// TypeDevModeOff names the problem of an action refused outside dev mode
// (docs/problems.md); DevModeOffType is its full type URI.
const (
	TypeDevModeOff = "console-dev-mode-off"
	DevModeOffType = httpkit.ProblemTypeBase + TypeDevModeOff
)

// Console is what the handler serves: the domain's reads and actions.
type Console interface {
	View() console.View
	Subscribe() (<-chan console.View, func())
	Lookup(customerID string) ([]console.Placement, error)
	SetBankFaults(ctx context.Context, req console.FaultsRequest) (console.BankFaults, error)
	StartStorm(ctx context.Context, req console.StormRequest) (console.StormResult, error)
	KillLeader(ctx context.Context) (string, error)
	StartProcess(ctx context.Context, name string) error
	StopProcess(ctx context.Context, name string) error
	PauseProcess(ctx context.Context, name string) error
	StopDatabase(ctx context.Context, name string) error
	StartDatabase(ctx context.Context, name string) error
	TraceSVG(ctx context.Context, traceID string) ([]byte, error)
}

// ActionRoutes lists every action route, so a test can check that each one
// is refused outside dev mode.
var ActionRoutes = []string{
	"POST /api/actions/faults",
	"POST /api/actions/storm",
	"POST /api/actions/kill-leader",
	"POST /api/actions/processes/{name}/start",
	"POST /api/actions/processes/{name}/stop",
	"POST /api/actions/processes/{name}/pause",
	"POST /api/actions/databases/{name}/stop",
	"POST /api/actions/databases/{name}/start",
}

// NewHandler routes the console's page and API. devMode is checked here,
// before any body is read, as well as in the domain.
func NewHandler(c Console, devMode bool, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := httpkit.NewMux()
	page, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /", http.FileServerFS(page))
	mux.HandleFunc("GET /api/view", func(w http.ResponseWriter, r *http.Request) {
		_ = httpkit.EncodeJSON(r.Context(), w, c.View())
	})
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) { streamViews(w, r, c, logger) })
	mux.HandleFunc("GET /api/ring/lookup", func(w http.ResponseWriter, r *http.Request) {
		placements, err := c.Lookup(r.URL.Query().Get("customer"))
		if err != nil {
			httpkit.ErrorEncoder(r.Context(), err, w)
			return
		}
		_ = httpkit.EncodeJSON(r.Context(), w, map[string]any{"placements": placements})
	})

	mux.HandleFunc("GET /api/traces/{id}", func(w http.ResponseWriter, r *http.Request) {
		svg, err := c.TraceSVG(r.Context(), r.PathValue("id"))
		if err != nil {
			httpkit.ErrorEncoder(r.Context(), err, w)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		// Shown through <img>, which runs no script; the policy says so
		// to anyone who opens it directly.
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, _ = w.Write(svg)
	})

	actions := map[string]func(r *http.Request) (any, error){
		"POST /api/actions/faults": func(r *http.Request) (any, error) {
			var req console.FaultsRequest
			if err := httpkit.DecodeJSON(r, &req); err != nil {
				return nil, err
			}
			return c.SetBankFaults(r.Context(), req)
		},
		"POST /api/actions/storm": func(r *http.Request) (any, error) {
			var req console.StormRequest
			if err := httpkit.DecodeJSON(r, &req); err != nil {
				return nil, err
			}
			res, err := c.StartStorm(r.Context(), req)
			return httpkit.Created{Body: res}, err
		},
		"POST /api/actions/kill-leader": func(r *http.Request) (any, error) {
			name, err := c.KillLeader(r.Context())
			return map[string]string{"killed": name}, err
		},
		"POST /api/actions/processes/{name}/start": func(r *http.Request) (any, error) {
			return done(r, c.StartProcess(r.Context(), r.PathValue("name")))
		},
		"POST /api/actions/processes/{name}/stop": func(r *http.Request) (any, error) {
			return done(r, c.StopProcess(r.Context(), r.PathValue("name")))
		},
		"POST /api/actions/processes/{name}/pause": func(r *http.Request) (any, error) {
			return done(r, c.PauseProcess(r.Context(), r.PathValue("name")))
		},
		"POST /api/actions/databases/{name}/stop": func(r *http.Request) (any, error) {
			return done(r, c.StopDatabase(r.Context(), r.PathValue("name")))
		},
		"POST /api/actions/databases/{name}/start": func(r *http.Request) (any, error) {
			return done(r, c.StartDatabase(r.Context(), r.PathValue("name")))
		},
	}
	for _, route := range ActionRoutes {
		act := actions[route]
		mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) {
			if !devMode {
				refuseOutsideDevMode(w, r)
				return
			}
			// A JSON content type cannot be sent cross-site without a CORS
			// preflight, which the console never grants: a page elsewhere
			// cannot make a visitor's browser press the console's buttons.
			if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
				httpkit.ErrorEncoder(r.Context(), errs.E(errs.Invalid, "actions take Content-Type: application/json").
					WithType("unsupported-media-type"), w)
				return
			}
			out, err := act(r)
			if err != nil {
				if errors.Is(err, console.ErrDevModeOff) {
					refuseOutsideDevMode(w, r)
					return
				}
				httpkit.ErrorEncoder(r.Context(), err, w)
				return
			}
			_ = httpkit.EncodeJSON(r.Context(), w, out)
		})
	}
	return mux
}

func done(r *http.Request, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return map[string]string{"done": r.PathValue("name")}, nil
}

// refuseOutsideDevMode answers 403 with a problem that says how to get dev
// mode, and why it is not on by default.
func refuseOutsideDevMode(w http.ResponseWriter, r *http.Request) {
	httpkit.WriteProblem(w, httpkit.Problem{
		Type: DevModeOffType, Title: http.StatusText(http.StatusForbidden), Status: http.StatusForbidden,
		Detail: console.ErrDevModeOff.Error(),
	})
}

// heartbeat keeps idle proxies from closing the event stream.
const heartbeat = 15 * time.Second

// streamViews sends the current view, then every new one, as server-sent
// events until the client goes away or the server shuts down.
func streamViews(w http.ResponseWriter, r *http.Request, c Console, logger *slog.Logger) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	views, stop := c.Subscribe()
	defer stop()
	send := func(v console.View) bool {
		data, err := json.Marshal(v)
		if err != nil {
			logger.ErrorContext(r.Context(), "encode view", "err", err)
			return false
		}
		if _, err := w.Write(append(append([]byte("event: view\ndata: "), data...), '\n', '\n')); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(c.View()) {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case v := <-views:
			if !send(v) {
				return
			}
		case <-beat.C:
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
