package parktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
)

// defaultExpires is the subscription duration a served SUBSCRIBE without
// Expires gets (RFC 6665 leaves it to the event package; RFC 4235 says 3600).
const defaultExpires = 3600

// Notify is one NOTIFY a subscription received.
type Notify struct {
	Event       string // the Event header: "dialog", "refer;id=7"
	State       string // the Subscription-State header: "active;expires=3600", "terminated;reason=timeout"
	ContentType string // the Content-Type header, empty if none
	Body        []byte
}

// Terminated reports whether this NOTIFY ended the subscription.
func (n Notify) Terminated() bool { return terminated(n.State) }

// Subscription is a subscription of the phone's (Phone.Subscribe): a BLF key
// watching an orbit. It is safe for concurrent use.
type Subscription struct {
	phone    *Phone
	dlg      *dialog
	event    string
	notifies chan Notify
	done     chan struct{}

	mu       sync.Mutex
	finished bool
}

// Subscribe sends a SUBSCRIBE for event ("dialog" for BLF) to target asking
// for expires (whole seconds; zero asks for one NOTIFY and the end) and
// returns once it is accepted, or a *StatusError (489 Bad Event for an
// unknown package). Its NOTIFYs, the first included, arrive on
// Subscription.Notifies. The phone does not refresh subscriptions: ask for
// more than the test lasts.
func (p *Phone) Subscribe(ctx context.Context, target, event string, expires time.Duration) (*Subscription, error) {
	if !isToken(event) {
		return nil, fmt.Errorf("%w: event %q is not a token", ErrInvalidOptions, event)
	}
	if expires < 0 {
		return nil, fmt.Errorf("%w: expires %v is negative", ErrInvalidOptions, expires)
	}
	u, uriHeaders, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	s := &Subscription{
		phone: p, dlg: p.newUACDialog(u), event: event,
		notifies: make(chan Notify, queueLen), done: make(chan struct{}),
	}
	// Registered before sending: the first NOTIFY may overtake the 2xx.
	p.mu.Lock()
	p.subs[s.dlg.key()] = s
	p.mu.Unlock()
	req := s.dlg.newRequest(sip.SUBSCRIBE)
	for _, h := range uriHeaders {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires/time.Second))))
	if event == "dialog" {
		req.AppendHeader(sip.NewHeader("Accept", "application/dialog-info+xml"))
	}
	res, err := p.do(ctx, req)
	if err == nil && !res.IsSuccess() {
		err = statusError(req, res)
	}
	if err != nil {
		s.finish()
		return nil, err
	}
	s.dlg.establish(res)
	return s, nil
}

// Notifies delivers the subscription's NOTIFYs in order of arrival; the last
// one has Terminated true. It holds 64 unread NOTIFYs; later ones are
// answered but dropped (and logged).
func (s *Subscription) Notifies() <-chan Notify { return s.notifies }

// Done is closed when the subscription has ended: a NOTIFY with
// Subscription-State terminated, or a 481 to Unsubscribe.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Unsubscribe sends SUBSCRIBE with Expires: 0 and waits for the NOTIFY that
// ends the subscription. On an ended subscription it does nothing.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	s.mu.Lock()
	finished := s.finished
	s.mu.Unlock()
	if finished {
		return nil
	}
	p := s.phone
	if !p.enter() {
		return ErrPhoneClosed
	}
	defer p.leave()
	req := s.dlg.newRequest(sip.SUBSCRIBE)
	req.AppendHeader(sip.NewHeader("Event", s.event))
	req.AppendHeader(sip.NewHeader("Expires", "0"))
	res, err := p.do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		if res.StatusCode == sip.StatusCallTransactionDoesNotExists {
			s.finish()
		}
		return statusError(req, res)
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		return ErrPhoneClosed
	}
}

// finish ends the subscription on our side, once.
func (s *Subscription) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishLocked()
}

func (s *Subscription) finishLocked() {
	if s.finished {
		return
	}
	s.finished = true
	close(s.done)
	p := s.phone
	p.mu.Lock()
	if p.subs[s.dlg.key()] == s {
		delete(p.subs, s.dlg.key())
	}
	p.mu.Unlock()
}

func (s *Subscription) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	p := s.phone
	if tag := s.dlg.peerTag(); tag != "" {
		if _, _, remoteTag, _ := dialogIDs(req); remoteTag != tag {
			p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
			return
		}
	}
	s.dlg.learnPeer(req)
	n := Notify{
		Event: headerValue(req.Headers(), "Event"),
		State: headerValue(req.Headers(), "Subscription-State"),
		Body:  bytes.Clone(req.Body()),
	}
	if ct := req.ContentType(); ct != nil {
		n.ContentType = ct.Value()
	}
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
		return
	}
	select {
	case s.notifies <- n:
	default:
		p.log.Warn("parktest: Notifies is full, NOTIFY dropped", "event", s.event, "state", n.State)
	}
	if n.Terminated() {
		s.finishLocked()
	}
	s.mu.Unlock()
	p.respond(tx, req, sip.StatusOK, "OK", nil)
}

// servedEvent is an event package the phone serves (ServeSubscriptions).
type servedEvent struct {
	contentType string
	state       func() []byte
}

// watcher is a subscription the phone serves: another party watching it.
type watcher struct {
	dlg     *dialog
	event   string // the package
	header  string // the Event header to echo, with its id
	expires int    // seconds granted

	send sync.Mutex // its NOTIFYs go one at a time, in order
}

// ServeSubscriptions makes the phone accept SUBSCRIBEs for event (other
// packages get 489 Bad Event), the way a park server serves BLF: a 200 OK,
// then at once a NOTIFY whose body is state() of type contentType, and a new
// NOTIFY on each NotifySubscribers. Expires: 0 is answered with a final
// NOTIFY (terminated;reason=timeout). Subscriptions do not expire on their
// own. state may be nil for empty bodies.
func (p *Phone) ServeSubscriptions(event, contentType string, state func() []byte) {
	if state == nil {
		state = func() []byte { return nil }
	}
	p.mu.Lock()
	p.events[event] = servedEvent{contentType: contentType, state: state}
	p.mu.Unlock()
}

// NotifySubscribers sends a NOTIFY with body to every subscription to event
// the phone serves, and returns how many were answered 2xx. A subscription
// whose NOTIFY is answered 481 is dropped.
func (p *Phone) NotifySubscribers(ctx context.Context, event string, body []byte) (int, error) {
	if !p.enter() {
		return 0, ErrPhoneClosed
	}
	defer p.leave()
	p.mu.Lock()
	se, ok := p.events[event]
	var ws []*watcher
	for _, w := range p.watchers {
		if w.event == event {
			ws = append(ws, w)
		}
	}
	p.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("%w: event %q is not served (ServeSubscriptions)", ErrInvalidOptions, event)
	}
	var errs []error
	n := 0
	for _, w := range ws {
		if err := p.notifyWatcher(ctx, w, false, se.contentType, body); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
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
	p.mu.Lock()
	se, served := p.events[pkg]
	w := p.watchers[dialogKey(callID, localTag)]
	if w != nil {
		se = p.events[w.event]
	}
	allow := make([]string, 0, len(p.events))
	for e := range p.events {
		allow = append(allow, e)
	}
	p.mu.Unlock()
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
		if err := p.notifyWatcher(context.Background(), w, expires == 0, se.contentType, se.state()); err != nil {
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
	if err := p.notifyWatcher(context.Background(), w, expires == 0, se.contentType, se.state()); err != nil {
		p.log.Debug("parktest: NOTIFY failed", "event", pkg, "error", err)
	}
}
