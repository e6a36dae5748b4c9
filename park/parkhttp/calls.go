package parkhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// callJSON is a parked call as the API shows it.
type callJSON struct {
	Orbit    orbit.Orbit `json:"orbit"`
	ParkID   string      `json:"park_id"`
	Party    string      `json:"party"`
	Parker   string      `json:"parker"`
	Node     string      `json:"node"`
	Since    time.Time   `json:"since"`
	RecallAt *time.Time  `json:"recall_at,omitempty"`
	State    string      `json:"state"`
	Attempts int         `json:"attempts"`
}

// callOf is c as the API shows it; node names this node for its own calls.
func callOf(c park.CallInfo, node string) callJSON {
	j := callJSON{
		Orbit: c.Orbit, ParkID: c.ParkID, Party: c.Party, Parker: c.Parker,
		Node: c.Node, Since: c.Since.UTC(), State: c.State.String(), Attempts: c.Attempts,
	}
	if j.Node == "" {
		j.Node = node
	}
	if !c.RecallAt.IsZero() {
		at := c.RecallAt.UTC()
		j.RecallAt = &at
	}
	return j
}

// callsJSON is GET /api/calls, and the snapshot that starts an event stream.
type callsJSON struct {
	Kind  string     `json:"kind,omitempty"` // "snapshot" in a stream
	Now   time.Time  `json:"now"`
	Node  string     `json:"node"`
	Calls []callJSON `json:"calls"`
}

func (h *Handler) snapshot() callsJSON {
	calls := h.lot.Calls()
	s := callsJSON{Now: time.Now().UTC(), Node: h.opts.Node, Calls: make([]callJSON, 0, len(calls))}
	for _, c := range calls {
		s.Calls = append(s.Calls, callOf(c, h.opts.Node))
	}
	return s
}

func (h *Handler) serveCalls(w http.ResponseWriter, r *http.Request) {
	if allow(w, r, http.MethodGet, http.MethodHead) {
		writeJSON(w, http.StatusOK, h.snapshot())
	}
}

// serveCall is GET (the call) and DELETE (hang it up) of one orbit.
func (h *Handler) serveCall(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead, http.MethodDelete) {
		return
	}
	o, ok := pathOrbit(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodDelete {
		c, found := h.lot.Lookup(o)
		if !found {
			status, code := errorStatus(h.notParked(o))
			writeError(w, status, code, fmt.Sprintf("orbit %s: no call parked there", o))
			return
		}
		writeJSON(w, http.StatusOK, callOf(c, h.opts.Node))
		return
	}
	h.act(w, r, o, h.lot.Drop, func(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) })
}

// serveRecall is POST /api/calls/{orbit}/recall.
func (h *Handler) serveRecall(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	o, ok := pathOrbit(w, r)
	if !ok {
		return
	}
	h.act(w, r, o, h.lot.Recall, func(w http.ResponseWriter) {
		c, _ := h.lot.Lookup(o)
		writeJSON(w, http.StatusAccepted, callOf(c, h.opts.Node))
	})
}

// act runs an operator's action on the call in o: here when this node
// holds it, passed on to the node that does otherwise. With ?park_id= it
// acts only while o still holds that call.
func (h *Handler) act(w http.ResponseWriter, r *http.Request, o orbit.Orbit, do func(orbit.Orbit) error, done func(http.ResponseWriter)) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "query: "+err.Error())
		return
	}
	if id := q.Get("park_id"); id != "" {
		if c, ok := h.lot.Lookup(o); ok && c.ParkID != id {
			writeError(w, http.StatusConflict, "stale", fmt.Sprintf("orbit %s holds park ID %s, not %s", o, c.ParkID, id))
			return
		}
	}
	err = do(o)
	var elsewhere *park.ElsewhereError
	switch {
	case err == nil:
		done(w)
	case errors.As(err, &elsewhere) && r.Header.Get(forwardedHeader) == "":
		h.passOn(w, r, elsewhere.Node)
	default:
		status, code := errorStatus(err)
		writeError(w, status, code, err.Error())
	}
}

// forwardedHeader marks a request passed on by another node, which is
// never passed on again: two nodes that each think the other holds a call
// must not bounce it between them.
const forwardedHeader = "X-Callpark-Passed-On"

// passOn sends r to node's API and copies its answer back.
func (h *Handler) passOn(w http.ResponseWriter, r *http.Request, node string) {
	if h.opts.Peer == nil {
		writeError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("node %s holds the call and this node cannot reach its API", node))
		return
	}
	base, err := h.opts.Peer(r.Context(), node)
	if err != nil {
		writeError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("node %s holds the call: %v", node, err))
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, strings.TrimSuffix(base, "/")+r.URL.Path+"?"+r.URL.RawQuery, nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("node %s: bad API address %q", node, base))
		return
	}
	req.Header.Set(forwardedHeader, h.opts.Node)
	if h.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.opts.Token)
	}
	res, err := h.client.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("node %s holds the call: %v", node, err))
		return
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadGateway, "node_unreachable", fmt.Sprintf("node %s: %v", node, err))
		return
	}
	if ct := res.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(body)
}

// notParked is the error for an orbit nobody holds: unknown when outside
// the lot's ranges.
func (h *Handler) notParked(o orbit.Orbit) error {
	for _, r := range h.lot.Ranges() {
		if r.Contains(o) {
			return park.ErrNotParked
		}
	}
	if h.lot.Ranges() == nil {
		return park.ErrNotParked
	}
	return park.ErrUnknownOrbit
}

// pathOrbit reads the {orbit} of the path, or answers 400.
func pathOrbit(w http.ResponseWriter, r *http.Request) (orbit.Orbit, bool) {
	o, err := orbit.ParseOrbit(r.PathValue("orbit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_orbit", err.Error())
		return "", false
	}
	return o, true
}

// configJSON is GET /api/config: the lot's settings, then the host's.
func (h *Handler) serveConfig(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	cfg := h.lot.Config()
	ranges := []string{}
	for _, rg := range h.lot.Ranges() {
		ranges = append(ranges, rg.String())
	}
	music := "none"
	if m := h.lot.Music(); m != nil {
		music = m.Name()
	}
	out := map[string]any{
		"node":                   h.opts.Node,
		"orbits":                 ranges,
		"pickup_timeout_seconds": cfg.PickupTimeout.Seconds(),
		"max_pickup_attempts":    cfg.MaxPickupAttempts,
		"recall_ring_seconds":    cfg.RecallRingTime.Seconds(),
		"fallback":               cfg.FallbackURI,
		"fallback_ring_seconds":  cfg.FallbackRingTime.Seconds(),
		"music":                  music,
	}
	if h.opts.Settings != nil {
		for k, v := range h.opts.Settings() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// serveReload is POST /api/reload.
func (h *Handler) serveReload(w http.ResponseWriter, r *http.Request) {
	if h.opts.Reload == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server has no configuration file to reload")
		return
	}
	if !allow(w, r, http.MethodPost) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
	defer cancel()
	result, err := h.opts.Reload(ctx)
	if err != nil {
		writeError(w, http.StatusUnprocessableEntity, "invalid_config", err.Error())
		return
	}
	if result == nil {
		result = map[string]any{"reloaded": true}
	}
	writeJSON(w, http.StatusOK, result)
}
