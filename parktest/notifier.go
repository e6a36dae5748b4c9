package parktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
)

// defaultExpires is the subscription duration a served SUBSCRIBE without
// Expires gets (RFC 6665 leaves it to the event package; RFC 4235 says 3600).
const defaultExpires = 3600

// Notifier serves the subscriptions to one event package for a phone that
// stands in for a park server (PhoneOptions.Serve), the way the server
// serves BLF: each SUBSCRIBE gets a 200 OK, then at once a NOTIFY whose body
// is State(); each Notify sends a new body to every subscriber. Expires: 0 is
// answered with a final NOTIFY (terminated;reason=timeout); subscriptions do
// not expire on their own. This is how the package tests its own
// Subscribe; a test of a real server has no need of it.
type Notifier struct {
	// Event is the package served, a token such as "dialog".
	Event string
	// ContentType is the Content-Type of every NOTIFY body; empty sends none.
	ContentType string
	// State returns the body of a subscription's first NOTIFY and of the
	// NOTIFYs answering a refresh; nil means empty bodies.
	State func() []byte

	phone atomic.Pointer[Phone] // the phone serving it, set by StartPhone
}

// Notify sends a NOTIFY with body to every subscription n serves, and
// returns how many were answered 2xx. A subscription whose NOTIFY is
// answered 481 is dropped. A Notifier that no phone serves returns
// ErrInvalidOptions.
func (n *Notifier) Notify(ctx context.Context, body []byte) (int, error) {
	p := n.phone.Load()
	if p == nil {
		return 0, fmt.Errorf("%w: Notifier %q is not in a phone's PhoneOptions.Serve", ErrInvalidOptions, n.Event)
	}
	if !p.enter() {
		return 0, ErrPhoneClosed
	}
	defer p.leave()
	p.mu.Lock()
	var ws []*watcher
	for _, w := range p.watchers {
		if w.event == n.Event {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	var errs []error
	sent := 0
	for _, w := range ws {
		if err := p.notifyWatcher(ctx, w, false, n.ContentType, body); err != nil {
			errs = append(errs, err)
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

// state returns the body of a NOTIFY that reports the current state.
func (n *Notifier) state() []byte {
	if n.State == nil {
		return nil
	}
	return n.State()
}

// checkServe validates PhoneOptions.Serve and indexes it by package.
func checkServe(serve []*Notifier) (map[string]*Notifier, error) {
	events := make(map[string]*Notifier, len(serve))
	for i, n := range serve {
		switch {
		case n == nil:
			return nil, fmt.Errorf("%w: PhoneOptions.Serve[%d] is nil", ErrInvalidOptions, i)
		case !isToken(n.Event):
			return nil, fmt.Errorf("%w: PhoneOptions.Serve[%d].Event %q is not a token", ErrInvalidOptions, i, n.Event)
		case events[n.Event] != nil:
			return nil, fmt.Errorf("%w: PhoneOptions.Serve holds event %q twice", ErrInvalidOptions, n.Event)
		case n.phone.Load() != nil:
			return nil, fmt.Errorf("%w: PhoneOptions.Serve[%d]: Notifier %q already serves another phone", ErrInvalidOptions, i, n.Event)
		}
		events[n.Event] = n
	}
	return events, nil
}

// watcher is a subscription the phone serves: another party watching it.
type watcher struct {
	dlg     *dialog
	event   string // the package
	header  string // the Event header to echo, with its id
	expires int    // seconds granted

	send sync.Mutex // its NOTIFYs go one at a time, in order
}

// notifyWatcher sends one NOTIFY of a served subscription.
func (p *Phone) notifyWatcher(ctx context.Context, w *watcher, final bool, contentType string, body []byte) error {
	w.send.Lock()
	defer w.send.Unlock()
	req := w.dlg.newRequest(sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", w.header))
	state := "active;expires=" + strconv.Itoa(w.expires)
	if final {
		state = "terminated;reason=timeout"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if contentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	}
	req.SetBody(body)
	res, err := p.do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		if res.StatusCode == sip.StatusCallTransactionDoesNotExists {
			p.dropWatcher(w)
		}
		return statusError(req, res)
	}
	return nil
}

func (p *Phone) dropWatcher(w *watcher) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watchers[w.dlg.key()] == w {
		delete(p.watchers, w.dlg.key())
	}
}

// requestedExpires reads a SUBSCRIBE's Expires: the default when absent,
// false when it is not a number.
func requestedExpires(req *sip.Request) (int, bool) {
	v := strings.TrimSpace(headerValue(req.Headers(), "Expires"))
	if v == "" {
		return defaultExpires, true
	}
	n, err := strconv.ParseUint(v, 10, 31)
	if err != nil {
		return 0, false
	}
	return int(min(n, defaultExpires)), true
}

func (p *Phone) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	callID, localTag, remoteTag, ok := dialogIDs(req)
	if !ok {
		p.respond(tx, req, sip.StatusBadRequest, "Bad Request", nil)
		return
	}
	eventValue := headerValue(req.Headers(), "Event")
	pkg, _ := eventHeader(eventValue)
	expires, ok := requestedExpires(req)
	if !ok {
		p.respond(tx, req, sip.StatusBadRequest, "Bad Request", nil, sip.NewHeader("Warning", `399 parktest "Expires is not a number"`))
		return
	}
	n, served := p.events[pkg]
	p.mu.Lock()
	w := p.watchers[dialogKey(callID, localTag)]
	p.mu.Unlock()
	if w != nil {
		n = p.events[w.event]
	}
	allow := make([]string, 0, len(p.events))
	for e := range p.events {
		allow = append(allow, e)
	}
	slices.Sort(allow)
	if localTag != "" {
		// A refresh or an unsubscribe inside an existing subscription.
		if w == nil || w.dlg.peerTag() != remoteTag || w.event != pkg {
			p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
			return
		}
		if req.CSeq() == nil || !w.dlg.acceptRemoteSeq(req.CSeq().SeqNo) {
			p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
			return
		}
		p.respond(tx, req, sip.StatusOK, "OK", nil, sip.NewHeader("Expires", strconv.Itoa(expires)))
		if expires == 0 {
			p.dropWatcher(w)
		} else {
			w.send.Lock()
			w.expires = expires
			w.send.Unlock()
		}
		if err := p.notifyWatcher(context.Background(), w, expires == 0, n.ContentType, n.state()); err != nil {
			p.log.Debug("parktest: NOTIFY failed", "event", pkg, "error", err)
		}
		return
	}
	if !served {
		p.respond(tx, req, 489, "Bad Event", nil, sip.NewHeader("Allow-Events", strings.Join(allow, ", ")))
		return
	}
	if req.Contact() == nil {
		p.respond(tx, req, sip.StatusBadRequest, "Bad Request", nil, sip.NewHeader("Warning", `399 parktest "SUBSCRIBE without Contact"`))
		return
	}
	d := p.newUASDialog(req)
	w = &watcher{dlg: d, event: pkg, header: eventValue, expires: expires}
	if expires > 0 {
		p.mu.Lock()
		p.watchers[d.key()] = w
		p.mu.Unlock()
	}
	ok200 := dialogResponse(req, d, sip.StatusOK, "OK", nil)
	ok200.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	if err := tx.Respond(ok200); err != nil {
		p.log.Debug("parktest: 200 to SUBSCRIBE failed", "error", err)
		p.dropWatcher(w)
		return
	}
	if err := p.notifyWatcher(context.Background(), w, expires == 0, n.ContentType, n.state()); err != nil {
		p.log.Debug("parktest: NOTIFY failed", "event", pkg, "error", err)
	}
}
