package sipadapter

import (
	"context"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// Subscription lifetimes: what a SUBSCRIBE may ask for, and what it gets
// when it asks for nothing (RFC 6665 lets the notifier shorten it).
const (
	defaultSubscriptionExpiry = time.Hour
	minSubscriptionExpiry     = time.Minute
	maxSubscriptionExpiry     = time.Hour
)

// subscription is one BLF watcher (RFC 4235 dialog event package): of one
// orbit, or of the whole lot when it subscribed to the park extension.
type subscription struct {
	s       *Server
	key     string
	orbit   orbit.Orbit // empty: the whole lot
	user    string      // the Request-URI user it watches: an orbit or the park extension
	entity  string
	callID  string
	ourTag  string
	remote  sip.FromHeader // the subscriber, as To of our NOTIFYs
	target  sip.Uri        // its Contact
	network string

	mu      sync.Mutex // serialises NOTIFYs so versions go out in order
	cseq    uint32
	version int
	expires *time.Timer
	ended   bool

	// Lot changes queue here and one goroutine at a time sends them, so
	// the lot's event delivery never waits on a watcher's network.
	qmu     sync.Mutex
	queue   []blfUpdate
	pumping bool
}

// blfUpdate is one NOTIFY waiting to be sent: the state at the change.
type blfUpdate struct {
	dialogs []blfDialog
	state   string
}

// enqueue queues a NOTIFY and makes sure a goroutine is sending.
func (sub *subscription) enqueue(u blfUpdate) {
	sub.qmu.Lock()
	sub.queue = append(sub.queue, u)
	start := !sub.pumping
	sub.pumping = true
	sub.qmu.Unlock()
	if start {
		sub.s.tasks.Go(sub.pump)
	}
}

func (sub *subscription) pump() {
	for {
		sub.qmu.Lock()
		if len(sub.queue) == 0 {
			sub.pumping = false
			sub.qmu.Unlock()
			return
		}
		u := sub.queue[0]
		sub.queue = sub.queue[1:]
		sub.qmu.Unlock()
		sub.notify(u.dialogs, u.state, false)
	}
}

// onSubscribe serves SUBSCRIBE for the dialog event package to an orbit or
// to the park extension; Expires 0 ends a subscription with a final NOTIFY.
func (s *Server) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	ev := req.GetHeader("Event")
	if ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "dialog") {
		s.reply(req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "dialog, refer"))
		return
	}
	expiry := defaultSubscriptionExpiry
	if h := req.GetHeader("Expires"); h != nil {
		secs, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || secs < 0 {
			s.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("bad Expires"))
			return
		}
		expiry = min(max(time.Duration(secs)*time.Second, minSubscriptionExpiry), maxSubscriptionExpiry)
		if secs == 0 {
			expiry = 0
		}
	}

	// A refresh or an unsubscribe arrives inside the subscription's dialog.
	if to := req.To(); to != nil && to.Params.Has("tag") {
		key, _ := requestKey(req)
		s.mu.Lock()
		sub := s.subs[key]
		s.mu.Unlock()
		if sub == nil {
			s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
			return
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
		s.respond(tx, res)
		if expiry == 0 {
			s.endSubscription(sub, "terminated;reason=timeout")
			return
		}
		sub.expires.Reset(expiry)
		sub.enqueue(blfUpdate{dialogs: s.dialogState(sub.orbit), state: "active;expires=" + strconv.Itoa(int(expiry/time.Second))})
		return
	}

	user := req.Recipient.User
	var o orbit.Orbit
	switch {
	case user == s.cfg.ParkExtension:
	case s.isOrbit(orbit.Orbit(user)):
		o = orbit.Orbit(user)
	default:
		s.reply(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	contact := req.Contact()
	from := req.From()
	if contact == nil || from == nil || req.CallID() == nil {
		s.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("SUBSCRIBE needs From, Contact and Call-ID"))
		return
	}
	sub := &subscription{
		s:       s,
		orbit:   o,
		user:    user,
		entity:  s.uri(user),
		callID:  req.CallID().Value(),
		ourTag:  sip.GenerateTagN(16),
		remote:  sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()},
		target:  *contact.Address.Clone(),
		network: req.Transport(),
		cseq:    1,
	}
	sub.key = dialogKey(sub.callID, sub.ourTag, fromTag(req))
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.To().Params.Add("tag", sub.ourTag)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: s.addr.Addr().String(), Port: int(s.addr.Port())}})
	s.respond(tx, res)

	if expiry == 0 {
		// A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then done.
		sub.notify(s.dialogState(o), "terminated;reason=timeout", true)
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		sub.notify(s.dialogState(o), "terminated;reason=noresource", true)
		return
	}
	// The first NOTIFY is queued before the subscription can see a lot
	// change, so the watcher gets the states in order.
	sub.enqueue(blfUpdate{dialogs: s.dialogState(o), state: "active;expires=" + strconv.Itoa(int(expiry/time.Second))})
	s.subs[sub.key] = sub
	sub.expires = time.AfterFunc(expiry, func() { s.endSubscription(sub, "terminated;reason=timeout") })
	s.mu.Unlock()
}

// endSubscription forgets a subscription and sends its final NOTIFY.
func (s *Server) endSubscription(sub *subscription, state string) {
	s.mu.Lock()
	if s.subs[sub.key] != sub {
		s.mu.Unlock()
		return
	}
	delete(s.subs, sub.key)
	s.mu.Unlock()
	sub.expires.Stop()
	sub.notify(s.dialogState(sub.orbit), state, true)
}

// observeForBLF turns lot events into NOTIFYs for the orbit's watchers and
// the whole lot's.
func (s *Server) observeForBLF(e park.Event) {
	if e.Kind != park.EventParked && e.Kind != park.EventEnded {
		return
	}
	s.mu.Lock()
	var watchers []*subscription
	for _, sub := range s.subs {
		if sub.orbit == "" || sub.orbit == e.Call.Orbit {
			watchers = append(watchers, sub)
		}
	}
	s.mu.Unlock()
	// One snapshot per watched orbit (or the whole lot), however many watch it.
	states := make(map[orbit.Orbit][]blfDialog, 2)
	for _, sub := range watchers {
		state, ok := states[sub.orbit]
		if !ok {
			state = s.dialogState(sub.orbit)
			states[sub.orbit] = state
		}
		state = slices.Clip(state) // each watcher appends its own terminated entry
		if e.Kind == park.EventEnded {
			state = append(state, blfDialog{ID: e.Call.ParkID, Orbit: e.Call.Orbit, Party: e.Call.Party, State: "terminated"})
		}
		sub.enqueue(blfUpdate{dialogs: state, state: "active"})
	}
}

// blfDialog is one parked call as a BLF <dialog>.
type blfDialog struct {
	ID, Party, State string
	Orbit            orbit.Orbit
}

// dialogState lists the calls parked in o (all calls when o is empty).
func (s *Server) dialogState(o orbit.Orbit) []blfDialog {
	var out []blfDialog
	if o != "" {
		if info, ok := s.lot.Lookup(o); ok {
			out = append(out, blfDialog{ID: info.ParkID, Orbit: info.Orbit, Party: info.Party, State: "confirmed"})
		}
		return out
	}
	for _, info := range s.lot.Calls() {
		out = append(out, blfDialog{ID: info.ParkID, Orbit: info.Orbit, Party: info.Party, State: "confirmed"})
	}
	return out
}

// notify sends the next NOTIFY of the subscription: full state, version + 1.
// A final NOTIFY ends the subscription: later ones are dropped.
func (sub *subscription) notify(dialogs []blfDialog, state string, final bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ended {
		return
	}
	if final {
		defer func() { sub.ended = true }()
	}
	s := sub.s
	body := dialogInfoXML(sub.entity, sub.version, dialogs, s.uri)
	sub.version++
	req := sip.NewRequest(sip.NOTIFY, sub.target)
	from := sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: sub.user, Host: s.addr.Addr().String(), Port: int(s.addr.Port())}, Params: sip.NewParams()}
	from.Params.Add("tag", sub.ourTag)
	to := sip.ToHeader{DisplayName: sub.remote.DisplayName, Address: sub.remote.Address, Params: sub.remote.Params}
	callID := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	sub.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: from.Address.User, Host: s.addr.Addr().String(), Port: int(s.addr.Port())}})
	req.AppendHeader(sip.NewHeader("Event", "dialog"))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dialog-info+xml"))
	req.SetBody(body)
	if sub.network != "" {
		req.SetTransport(sub.network)
	}
	ctx, cancel := context.WithTimeout(s.tasksCtx, 5*time.Second)
	defer cancel()
	res, err := s.client.Do(ctx, req, sipgo.ClientRequestAddVia)
	if err != nil {
		s.log.Debug("BLF NOTIFY failed", "entity", sub.entity, "err", err)
		return
	}
	if res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode >= 400 && !strings.HasPrefix(state, "terminated") {
		// The watcher forgot the subscription: stop notifying it.
		s.mu.Lock()
		if s.subs[sub.key] == sub {
			delete(s.subs, sub.key)
			sub.expires.Stop()
		}
		s.mu.Unlock()
		sub.ended = true
	}
}

// dialogInfoXML renders RFC 4235 dialog-info, always with state="full".
func dialogInfoXML(entity string, version int, dialogs []blfDialog, orbitURI func(string) string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="%s">`+"\n", version, xmlEscape(entity))
	for _, d := range dialogs {
		fmt.Fprintf(&b, `  <dialog id="%s" direction="recipient">`+"\n", xmlEscape(d.ID))
		fmt.Fprintf(&b, "    <state>%s</state>\n", d.State)
		if d.Party != "" {
			fmt.Fprintf(&b, "    <remote><identity>%s</identity></remote>\n", xmlEscape(d.Party))
		}
		fmt.Fprintf(&b, "    <local><identity>%s</identity></local>\n", xmlEscape(orbitURI(string(d.Orbit))))
		b.WriteString("  </dialog>\n")
	}
	b.WriteString("</dialog-info>\n")
	return []byte(b.String())
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
