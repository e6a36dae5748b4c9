package parkhttp

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/callpark/callpark/park"
)

// history is how many events a reconnecting client can catch up on.
const history = 1024

// keepAlive is how often an idle stream gets a comment line.
const keepAlive = 15 * time.Second

// flushEvery is how long an event may wait for others to go out with it:
// at a thousand parks a second a stream woken and written for every event
// would cost the server more than the page is worth.
const flushEvery = 50 * time.Millisecond

// entry is one event of the history, encoded once, by the first stream
// that sends it (never when nobody watches), off the lot's own goroutine.
type entry struct {
	seq  uint64
	ev   park.Event
	once sync.Once
	data []byte
}

func (en *entry) json(node string) []byte {
	en.once.Do(func() { en.data = appendEvent(make([]byte, 0, 512), en.ev, node) })
	return en.data
}

// hub keeps the lot's recent events and wakes the streams.
type hub struct {
	lot  *park.Lot
	node string
	boot string // tells this run's event IDs from an earlier run's
	stop func()

	mu     sync.Mutex
	seq    uint64
	ring   []*entry // the last events: the one of seq s at index (s-1) % history
	subs   map[*subscriber]struct{}
	closed chan struct{}
}

// subscriber is an open stream; wake says there is something after the
// last event it sent.
type subscriber struct{ wake chan struct{} }

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

// observe records a lot's event and wakes every stream. Updates of a
// handoff change nothing a watcher sees, and are left out.
func (h *hub) observe(e park.Event) {
	if e.Kind == park.EventUpdated {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	en := &entry{seq: h.seq, ev: e}
	if len(h.ring) < history {
		h.ring = append(h.ring, en)
	} else {
		h.ring[(h.seq-1)%history] = en
	}
	for s := range h.subs {
		select {
		case s.wake <- struct{}{}:
		default: // already woken
		}
	}
}

// id is an event's SSE ID.
func (h *hub) id(seq uint64) string { return h.boot + "-" + strconv.FormatUint(seq, 10) }

// subscribe opens a stream after lastID. It returns the sequence number the
// stream has sent up to: lastID's, when the hub still has every event
// since, else the current one with a snapshot to send first.
func (h *hub) subscribe(lastID string, snapshot func() callsJSON) (s *subscriber, last uint64, snap []byte) {
	s = &subscriber{wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s] = struct{}{}
	if seq, ok := h.parse(lastID); ok {
		if seq < h.seq {
			s.wake <- struct{}{} // what was missed goes out at once
		}
		return s, seq, nil
	}
	last, snap = h.snapshotLocked(snapshot)
	return s, last, snap
}

// parse reads an event ID of this run whose followers the hub still has.
func (h *hub) parse(id string) (uint64, bool) {
	boot, n, ok := strings.Cut(id, "-")
	if !ok || boot != h.boot {
		return 0, false
	}
	seq, err := strconv.ParseUint(n, 10, 64)
	if err != nil || seq > h.seq || h.seq-seq > uint64(len(h.ring)) {
		return 0, false
	}
	return seq, true
}

// snapshotLocked takes a snapshot under the hub's lock, so that no event
// falls between it and the events after seq.
func (h *hub) snapshotLocked(snapshot func() callsJSON) (seq uint64, data []byte) {
	sn := snapshot()
	sn.Kind = "snapshot"
	data, _ = json.Marshal(sn)
	return h.seq, data
}

// after returns the events after seq; when some of them are no longer
// kept, a snapshot and its sequence number instead.
func (h *hub) after(seq uint64, snapshot func() callsJSON) (ents []*entry, snapSeq uint64, snap []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seq-seq > uint64(len(h.ring)) {
		snapSeq, snap = h.snapshotLocked(snapshot)
		return nil, snapSeq, snap
	}
	ents = make([]*entry, 0, h.seq-seq)
	for s := seq + 1; s <= h.seq; s++ {
		ents = append(ents, h.ring[(s-1)%history])
	}
	return ents, 0, nil
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
	s, last, snap := h.hub.subscribe(lastID, h.snapshot)
	defer h.hub.unsubscribe(s)

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// A client cut off retries after a second, not a browser's default 3 s.
	buf := []byte("retry: 1000\n\n")
	if snap != nil {
		buf = h.appendEntry(buf, last, snap)
	} else {
		buf = append(buf, ": connected\n\n"...)
	}
	write := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(keepAlive))
		_, err := w.Write(buf)
		buf = buf[:0]
		return err == nil && rc.Flush() == nil
	}
	if !write() {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	gather := time.NewTimer(0)
	<-gather.C
	for {
		select {
		case <-s.wake:
			// Let the events of the next moments join this one.
			gather.Reset(flushEvery)
			select {
			case <-gather.C:
			case <-r.Context().Done():
				return
			case <-h.hub.closed:
				return
			}
			ents, snapSeq, snap := h.hub.after(last, h.snapshot)
			if snap != nil {
				buf, last = h.appendEntry(buf, snapSeq, snap), snapSeq
			}
			for _, en := range ents {
				buf, last = h.appendEntry(buf, en.seq, en.json(h.opts.Node)), en.seq
			}
			if len(buf) > 0 && !write() {
				return
			}
		case <-tick.C:
			buf = append(buf, ": keep-alive\n\n"...)
			if !write() {
				return
			}
		case <-r.Context().Done():
			return
		case <-h.hub.closed:
			return
		}
	}
}

// appendEntry appends one event of the stream.
func (h *Handler) appendEntry(b []byte, seq uint64, data []byte) []byte {
	b = append(b, "id: "...)
	b = append(b, h.hub.boot...)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}
