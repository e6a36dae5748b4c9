package parktest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
)

// Notify is one NOTIFY a subscription received.
type Notify struct {
	Event       string // the Event header: "dialog", "refer;id=7"
	State       string // the Subscription-State header: "active;expires=3600", "terminated;reason=timeout"
	ContentType string // the Content-Type header, empty if none
	Contact     string // the Contact header's value: where the notifier takes requests
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
	if c := req.Contact(); c != nil {
		n.Contact = c.Value()
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
