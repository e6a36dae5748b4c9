package parkhttp

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/callpark/callpark/park"
)

// Options configure a Handler. The zero value serves loopback clients only,
// with no metrics and no reload.
type Options struct {
	// Token, when set, is the bearer token every request must carry
	// (Authorization: Bearer, or ?access_token= for a browser's first
	// request and its EventSource); then any address is served. Empty:
	// loopback clients only.
	Token string

	// Node is this node's name in a cluster, shown as the node of its own
	// calls; empty for a lone node.
	Node string

	// Settings adds the host's own settings to GET /api/config (the park
	// extension, the SIP address, the cluster's name); the lot's own are
	// always there. Called on each request. Nil: the lot's only.
	Settings func() map[string]any

	// Peer returns the base URL (http://host:port) of another node's
	// operator API, for a recall or hang-up of a call that node holds.
	// The request is passed on with this handler's token. Nil: such a
	// request fails with 502.
	Peer func(ctx context.Context, node string) (baseURL string, err error)

	// Reload re-reads the host's configuration for POST /api/reload: its
	// result is the 200 response's JSON body (nil: {"reloaded": true}),
	// its error the 422's. Nil: 404.
	Reload func(ctx context.Context) (result any, err error)

	// Metrics, when set, is served at GET /metrics behind the same access
	// rule (a promhttp handler over the host's registry).
	Metrics http.Handler

	// Logger receives diagnostics; nil discards them.
	Logger *slog.Logger
}

// Handler serves the admin API, the event stream and the live page of one
// lot. Create it with NewHandler and Close it when done: it watches the lot
// from the start, so a client that reconnects gets what it missed.
type Handler struct {
	lot  *park.Lot
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
	hub  *hub
	// client passes requests on to other nodes (Options.Peer).
	client *http.Client
}

//go:embed ui
var ui embed.FS

// NewHandler returns a handler for lot. It starts watching the lot's
// events at once.
func NewHandler(lot *park.Lot, opts Options) *Handler {
	h := &Handler{
		lot:    lot,
		opts:   opts,
		log:    opts.Logger,
		mux:    http.NewServeMux(),
		client: &http.Client{Timeout: peerTimeout},
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.hub = newHub(lot, opts.Node)
	h.routes()
	return h
}

// peerTimeout bounds a request passed on to another node.
const peerTimeout = 10 * time.Second

// Close stops watching the lot and ends the event streams being served.
func (h *Handler) Close() error {
	h.hub.close()
	h.client.CloseIdleConnections()
	return nil
}

func (h *Handler) routes() {
	static, _ := fs.Sub(ui, "ui")
	files := http.StripPrefix("/ui/", http.FileServerFS(static))
	h.mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	h.mux.Handle("/ui/", files)
	h.mux.HandleFunc("/api/calls", h.serveCalls)
	h.mux.HandleFunc("/api/calls/{orbit}", h.serveCall)
	h.mux.HandleFunc("/api/calls/{orbit}/recall", h.serveRecall)
	h.mux.HandleFunc("/api/config", h.serveConfig)
	h.mux.HandleFunc("/api/events", h.serveEvents)
	h.mux.HandleFunc("/api/reload", h.serveReload)
	h.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API path: "+r.URL.Path)
	})
	if h.opts.Metrics != nil {
		h.mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
			if allow(w, r, http.MethodGet, http.MethodHead) {
				h.opts.Metrics.ServeHTTP(w, r)
			}
		})
	}
}

// ServeHTTP checks the client's access, then serves the request. The
// page's script and style sheet (/ui/) are served to anyone: they are the
// same for every lot, hold nothing of this one's, and a <script src> could
// not send the token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/ui/") && !h.admit(w, r) {
		return
	}
	h.mux.ServeHTTP(w, r)
}

// admit applies the access rule: the token when one is set, else loopback.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) bool {
	if h.opts.Token == "" {
		if isLoopback(r.RemoteAddr) {
			return true
		}
		writeError(w, http.StatusForbidden, "forbidden", "served to loopback clients only: set a token to serve others")
		return false
	}
	got, ok := bearer(r)
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(h.opts.Token)) == 1 {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="callpark"`)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
	} else {
		writeError(w, http.StatusUnauthorized, "unauthorized", "wrong token")
	}
	return false
}

// bearer returns the request's token: the Authorization header's, else the
// access_token query parameter's (RFC 6750 2.1, 2.3).
func bearer(r *http.Request) (string, bool) {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, token, ok := strings.Cut(a, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token), true
		}
		return "", true // a header of another kind: a wrong credential
	}
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t, true
	}
	return "", false
}

// isLoopback reports whether a request's remote address is on loopback.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// allow answers 405 unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not served here")
	return false
}

// apiError is the body of every error the API answers.
type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorStatus maps a lot's error to the API's status and code.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, park.ErrNotParked):
		return http.StatusNotFound, "not_parked"
	case errors.Is(err, park.ErrUnknownOrbit):
		return http.StatusNotFound, "unknown_orbit"
	case errors.Is(err, park.ErrStale):
		return http.StatusConflict, "stale"
	case errors.Is(err, park.ErrElsewhere):
		return http.StatusBadGateway, "node_unreachable"
	default:
		return http.StatusServiceUnavailable, "unavailable"
	}
}
