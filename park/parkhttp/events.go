package parkhttp

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpark/callpark/park"
)

// eventJSON is one event of the stream.
type eventJSON struct {
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Call    callJSON  `json:"call"`
	Purpose string    `json:"purpose,omitempty"`
	Target  string    `json:"target,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func eventOf(e park.Event, node string) eventJSON {
	j := eventJSON{Kind: e.Kind.String(), Time: e.Time.UTC(), Call: callOf(e.Call, node)}
	switch e.Kind {
	case park.EventRinging, park.EventRingFailed:
		j.Purpose, j.Target, j.Attempt = e.Purpose.String(), e.Target, e.Attempt
	case park.EventEnded:
		j.Outcome = e.Outcome.String()
	}
	if e.Err != nil {
		j.Error = e.Err.Error()
	}
	return j
}

// history is how many events a reconnecting client can catch up on.
const history = 1024

// subscriberBuffer is how many events a client may lag behind before it
// is cut off (it reconnects, and catches up from history or a snapshot).
const subscriberBuffer = 256

// keepAlive is how often an idle stream gets a comment line.
const keepAlive = 15 * time.Second

// flushEvery is how long an event may wait in the stream's buffer for
// others to go out with it.
const flushEvery = 50 * time.Millisecond

// entry is one event of the history, encoded once.
type entry struct {
	seq  uint64
	data []byte
}

// hub keeps the lot's recent events and hands them to the streams.
type hub struct {
	lot  *park.Lot
	node string
	boot string // tells this run's event IDs from an earlier run's
	stop func()

	mu     sync.Mutex
	seq    uint64
	ring   []entry // the last events: the one of seq s at index (s-1) % history
	subs   map[*subscriber]struct{}
	closed chan struct{}
}

type subscriber struct {
	ch chan entry
	// cut is closed when the subscriber fell behind and was dropped.
	cut chan struct{}
}

func newHub(lot *park.Lot, node string) *hub {
	var b [4]byte
	_, _ = rand.Read(b[:])
	h := &hub{lot: lot, node: node, boot: hex.EncodeToString(b[:]), subs: map[*subscriber]struct{}{}, closed: make(chan struct{})}
	h.stop = lot.Observe(park.ObserverFunc(h.observe))
	return h
}

func (h *hub) close() {
	h.stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
	default:
		close(h.closed)
	}
}

// observe records a lot's event and hands it to every stream. Updates of a
// handoff change nothing a watcher sees, and are left out.
func (h *hub) observe(e park.Event) {
	if e.Kind == park.EventUpdated {
		return
	}
	data, err := json.Marshal(eventOf(e, h.node))
	if err != nil {
		return // every field is a plain value: cannot happen
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	en := entry{seq: h.seq, data: data}
	if len(h.ring) < history {
		h.ring = append(h.ring, en)
	} else {
		h.ring[(h.seq-1)%history] = en
	}
	for s := range h.subs {
		select {
		case s.ch <- en:
		default:
			delete(h.subs, s)
			close(s.cut)
		}
	}
}

// id is an event's SSE ID.
func (h *hub) id(seq uint64) string { return h.boot + "-" + strconv.FormatUint(seq, 10) }

// subscribe starts a stream after lastID: the events since, when the hub
// still has them all, else a snapshot (taken under the hub's lock, so no
// event falls between it and the stream) and its ID.
func (h *hub) subscribe(lastID string, snapshot func() callsJSON) (s *subscriber, backlog []entry, snap []byte, snapID string) {
	s = &subscriber{ch: make(chan entry, subscriberBuffer), cut: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if backlog, ok := h.since(lastID); ok {
		h.subs[s] = struct{}{}
		return s, backlog, nil, ""
	}
	sn := snapshot()
	sn.Kind = "snapshot"
	snap, _ = json.Marshal(sn)
	h.subs[s] = struct{}{}
	return s, nil, snap, h.id(h.seq)
}

// since returns the events after lastID, false when it is not this run's
// or older than the history.
func (h *hub) since(lastID string) ([]entry, bool) {
	boot, n, ok := strings.Cut(lastID, "-")
	if !ok || boot != h.boot {
		return nil, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil || seq > h.seq {
		return nil, false
	}
	if seq == h.seq {
		return nil, true
	}
	if h.seq-seq > uint64(len(h.ring)) {
		return nil, false // some were dropped from the history
	}
	out := make([]entry, 0, h.seq-seq)
	for s := seq + 1; s <= h.seq; s++ {
		out = append(out, h.ring[(s-1)%history])
	}
	return out, true
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, s)
}

// serveEvents is GET /api/events, the lot's events as server-sent events.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	rc := http.NewResponseController(w)
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("last_event_id")
	}
	s, backlog, snap, snapID := h.hub.subscribe(lastID, h.snapshot)
	defer h.hub.unsubscribe(s)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// A client cut off retries after a second, not a browser's default 3 s.
	_, _ = fmt.Fprint(w, "retry: 1000\n\n")
	send := func(id string, data []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(keepAlive))
		if _, err := fmt.Fprintf(w, "id: %s\ndata: %s\n\n", id, data); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if snap != nil && !send(snapID, snap) {
		return
	}
	for _, en := range backlog {
		if !send(h.hub.id(en.seq), en.data) {
			return
		}
	}
	if len(backlog) == 0 && snap == nil {
		// Caught up with nothing to send: answer at once all the same,
		// so the client knows it is connected.
		_ = rc.SetWriteDeadline(time.Now().Add(keepAlive))
		if _, err := fmt.Fprint(w, ": caught up\n\n"); err != nil || rc.Flush() != nil {
			return
		}
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	// Events are written as they come and flushed at most every
	// flushEvery: at a thousand parks a second a flush (a write to the
	// socket) per event would cost the server more than the page is worth.
	flush := time.NewTimer(flushEvery)
	flush.Stop()
	pending := false
	for {
		select {
		case en := <-s.ch:
			_ = rc.SetWriteDeadline(time.Now().Add(keepAlive))
			if _, err := fmt.Fprintf(w, "id: %s\ndata: %s\n\n", h.hub.id(en.seq), en.data); err != nil {
				return
			}
			if !pending {
				pending = true
				flush.Reset(flushEvery)
			}
		case <-flush.C:
			pending = false
			if rc.Flush() != nil {
				return
			}
		case <-tick.C:
			_ = rc.SetWriteDeadline(time.Now().Add(keepAlive))
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-s.cut:
			return // fell behind: the client reconnects and catches up
		case <-r.Context().Done():
			return
		case <-h.hub.closed:
			return
		}
	}
}
