package main

// Call park, the PBX's side of it. The lot (package park) decides: which
// orbit, who retrieves, when to recall, the fallback, exactly one outcome.
// The PBX supplies what only it can: its legs (park.Leg: play music, hang
// up), a Dialer that rings a recall on the parker's registered phones, and
// the SIP around it: REFER to park, INVITE to an orbit to retrieve, BLF.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// parkCaller parks the caller itself: a phone that dialled the park
// extension (the consult call of an attended transfer), or was sent to an
// orbit by a transfer some other server made (Referred-By names the
// parker).
func (p *PBX) parkCaller(req *sip.Request, tx sip.ServerTransaction, caller string, directed orbit.Orbit) {
	l, answer := p.acceptLeg(req, tx, p.URI(caller))
	if l == nil {
		return
	}
	parker := sipadapter.ReferredBy(req)
	call, err := p.lot.Park(context.Background(), park.ParkRequest{Leg: l, Orbit: directed, Parker: parker, Party: l.Party()})
	if err != nil {
		code, reason, hs := sipadapter.StatusFor(err)
		p.log.Info("park refused", "party", l.Party(), "orbit", directed, "status", code, "why", err)
		p.refuse(l, code, reason, hs...)
		return
	}
	l.SetParked(call)
	if !p.answer(l, answer, sip.NewHeader("X-Park-Orbit", string(call.Orbit()))) {
		call.Abandon()
		return
	}
	p.log.Info("parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party(), "parker", parker)
	if parker != "" {
		p.tellParker(parker, call.Orbit())
	}
}

// retrieve gives the call parked in o to the caller.
func (p *PBX) retrieve(req *sip.Request, tx sip.ServerTransaction, caller string, o orbit.Orbit) {
	l, answer := p.acceptLeg(req, tx, p.URI(caller))
	if l == nil {
		return
	}
	got, err := p.lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: o, Retriever: l.Party(), Source: sipadapter.RequestSource(req)})
	if err != nil {
		code, reason, hs := sipadapter.StatusFor(err)
		p.log.Info("retrieve refused", "orbit", o, "from", l.Party(), "status", code, "why", err)
		p.refuse(l, code, reason, hs...)
		return
	}
	parked := got.Leg().(*sipadapter.Leg)
	if err := sipadapter.Bridge(parked, l); err != nil {
		p.log.Info("retrieve failed: the parked party hung up", "orbit", o, "err", err)
		p.refuse(l, sip.StatusNotFound, "Not Found")
		parked.Hangup(context.Background())
		return
	}
	if !p.answer(l, answer) {
		// Nobody is left to take the call: it ends, as retrieved.
		parked.Hangup(context.Background())
		return
	}
	p.log.Info("retrieved", "orbit", o, "park_id", got.ID(), "party", parked.Party(), "retriever", l.Party())
}

// onRefer is a transfer by one party of a call: Refer-To the park
// extension or a free orbit parks the other party (the referrer hears the
// orbit in the final NOTIFY and in a MESSAGE); Refer-To with Replaces naming
// a parked consult call puts the other party in its place (attended
// transfer into park). Refer-To an extension is a plain blind transfer.
func (p *PBX) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	l := p.lookup(req)
	if l == nil {
		sipadapter.Reply(p.log, req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	referTo := req.ReferTo()
	if referTo == nil {
		sipadapter.Reply(p.log, req, tx, sip.StatusBadRequest, "Bad Request", sipadapter.Warning("REFER without Refer-To"))
		return
	}
	l.WaitSettled(2 * time.Second) // a REFER may follow the answer at once
	other := l.Peer()
	if other == nil {
		sipadapter.Reply(p.log, req, tx, sip.StatusForbidden, "Forbidden", sipadapter.Warning("only a connected call can be transferred"))
		return
	}
	user := sipadapter.URIUser(referTo.Address)
	var replaced *sipadapter.Leg
	if v := referTo.Address.Headers; v != nil {
		if r, ok := v.Get("Replaces"); ok {
			callID, toTag, fromTag, err := sipadapter.ParseReplaces(r)
			if err != nil {
				sipadapter.Reply(p.log, req, tx, sip.StatusBadRequest, "Bad Request", sipadapter.Warning(err.Error()))
				return
			}
			p.mu.Lock()
			replaced = p.legs[sipadapter.DialogKey(callID, toTag, fromTag)]
			p.mu.Unlock()
			if replaced == nil {
				sipadapter.Reply(p.log, req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist", sipadapter.Warning("Replaces names no call of this PBX"))
				return
			}
		}
	}
	var job func() (string, error)
	switch {
	case replaced != nil:
		job = func() (string, error) { return p.takeOver(other, l, replaced) }
	case user == p.cfg.ParkExtension:
		job = func() (string, error) { return p.repark(other, l, "") }
	case p.isOrbit(user):
		job = func() (string, error) { return p.repark(other, l, orbit.Orbit(user)) }
	case p.users.Exists(user):
		job = func() (string, error) { return p.transfer(other, l, user) }
	default:
		sipadapter.Reply(p.log, req, tx, sip.StatusNotFound, "Not Found", sipadapter.Warning("Refer-To names no extension, orbit or park extension"))
		return
	}
	referCSeq := req.CSeq().SeqNo
	if !p.enter() {
		sipadapter.Reply(p.log, req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	defer p.handlers.Done()
	// A park (or take-over) is done before the 202, as the park server
	// does: the referrer may hang up the moment it has the 202, and its BYE
	// must find the party out of the call already, not be passed on to it.
	// A transfer to an extension rings for a while, so it runs after.
	var frag string
	var err error
	parking := replaced != nil || user == p.cfg.ParkExtension || p.isOrbit(user)
	if parking {
		frag, err = job()
	}
	sipadapter.Reply(p.log, req, tx, sip.StatusAccepted, "Accepted")
	p.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(p.tasksCtx, 10*time.Second+p.cfg.RingTimeout)
		defer cancel()
		p.notifyRefer(ctx, l, referCSeq, sipadapter.StatusSipfrag(100, "Trying"), false)
		if !parking {
			frag, err = job()
		}
		if err != nil {
			code, reason := transferStatus(err)
			frag = sipadapter.StatusSipfrag(code, reason)
		}
		p.notifyRefer(ctx, l, referCSeq, frag, true)
	})
}

// transferStatus is the sipfrag status of a transfer that failed.
func transferStatus(err error) (int, string) {
	var rejected *sipadapter.RejectedError
	switch {
	case errors.As(err, &rejected):
		return rejected.Code, rejected.Reason
	case errors.Is(err, sipadapter.ErrLegGone):
		return sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist"
	case errors.Is(err, park.ErrLotFull), errors.Is(err, park.ErrOrbitInUse), errors.Is(err, park.ErrClosed),
		errors.Is(err, park.ErrNotParked), errors.Is(err, park.ErrUnknownOrbit):
		code, reason, _ := sipadapter.StatusFor(err)
		return code, reason
	}
	return failureStatus(err)
}

// repark takes party out of its call with referrer and parks it; the
// referrer becomes the parker, so a recall rings its phones. If the lot
// refuses, the call is put back together.
func (p *PBX) repark(party, referrer *sipadapter.Leg, directed orbit.Orbit) (string, error) {
	sipadapter.Unbridge(party, referrer)
	call, err := p.lot.Park(context.Background(), park.ParkRequest{Leg: party, Orbit: directed, Parker: referrer.Party(), Party: party.Party()})
	if err != nil {
		p.log.Info("park refused", "orbit", directed, "party", party.Party(), "referrer", referrer.Party(), "why", err)
		if berr := sipadapter.Bridge(party, referrer); berr != nil {
			p.log.Warn("could not restore the call after a refused park", "err", berr)
		}
		return "", err
	}
	if !party.SetParked(call) {
		call.Abandon() // the party hung up between the unbridge and the park
	}
	p.log.Info("parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", party.Party(), "parker", referrer.Party())
	p.tellParker(referrer.Party(), call.Orbit())
	return sipadapter.ParkedSipfrag(call.Orbit()), nil
}

// takeOver is the attended transfer into park: the referrer's consult call
// to the park extension (replaced) holds an orbit; party takes its place,
// orbit and timer included, and the consult call ends.
func (p *PBX) takeOver(party, referrer, replaced *sipadapter.Leg) (string, error) {
	call := replaced.TakeParked() // its BYE must no longer end the call
	if call == nil {
		return "", fmt.Errorf("the replaced call is not parked: %w", park.ErrNotParked)
	}
	sipadapter.Unbridge(party, referrer)
	ctx, cancel := context.WithTimeout(p.tasksCtx, 5*time.Second)
	defer cancel()
	if err := call.Replace(ctx, park.ReplaceRequest{Leg: party, Parker: referrer.Party(), Party: party.Party()}); err != nil {
		replaced.SetParked(call)
		if berr := sipadapter.Bridge(party, referrer); berr != nil {
			p.log.Warn("could not restore the call after a refused take-over", "err", berr)
		}
		return "", err
	}
	party.SetParked(call)
	p.log.Info("parked by attended transfer", "orbit", call.Orbit(), "park_id", call.ID(), "party", party.Party(), "parker", referrer.Party())
	p.tellParker(referrer.Party(), call.Orbit())
	return sipadapter.ParkedSipfrag(call.Orbit()), nil
}

// transfer is a blind transfer to an extension: party's call with the
// referrer ends and party is connected to whichever phone of ext answers.
// If none does, party is put back with the referrer.
func (p *PBX) transfer(party, referrer *sipadapter.Leg, ext string) (string, error) {
	contacts := p.reg.Contacts(ext)
	if len(contacts) == 0 {
		return "", &sipadapter.RejectedError{Code: sip.StatusTemporarilyUnavailable, Reason: "Temporarily Unavailable"}
	}
	ctx, cancel := context.WithTimeout(p.tasksCtx, p.cfg.RingTimeout)
	defer cancel()
	target, err := p.ringLeg(ctx, contacts, identity("", party.Party()), p.URI(ext), func() {})
	if err != nil {
		return "", err
	}
	sipadapter.Unbridge(party, referrer)
	if err := sipadapter.Bridge(party, target); err != nil {
		target.Hangup(context.Background())
		return "", err
	}
	p.log.Info("transferred", "party", party.Party(), "to", ext, "by", referrer.Party())
	return sipadapter.StatusSipfrag(200, "OK"), nil
}

// notifyRefer reports a transfer's progress to the referrer; a NOTIFY
// that fails changes nothing, so it is only logged.
func (p *PBX) notifyRefer(ctx context.Context, l *sipadapter.Leg, referCSeq uint32, sipfrag string, final bool) {
	if err := sipadapter.NotifyRefer(ctx, l.Dialog(), referCSeq, sipfrag, final); err != nil {
		p.log.Debug("refer NOTIFY failed", "party", l.Party(), "err", err)
	}
}

// tellParker sends "Parked at <orbit>" as a MESSAGE to the parker's
// registered phones (or to its URI when it is not an extension here): a
// phone that shows no NOTIFY still shows this.
func (p *PBX) tellParker(parker string, o orbit.Orbit) {
	for _, target := range p.targets(parker) {
		p.tasks.Go(func() {
			ctx, cancel := context.WithTimeout(p.tasksCtx, 5*time.Second)
			defer cancel()
			req := sip.NewRequest(sip.MESSAGE, *target.Contact.Clone())
			from := identity("Park", p.URI(p.cfg.ParkExtension))
			from.Params.Add("tag", sip.GenerateTagN(16))
			req.AppendHeader(&from)
			req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			req.SetBody([]byte("Parked at " + string(o)))
			if target.Transport != "" {
				req.SetTransport(target.Transport)
			}
			res, err := sipadapter.ClientDo(ctx, p.client, req)
			if err != nil {
				p.log.Debug("parker notice failed", "parker", parker, "err", err)
				return
			}
			if !res.IsSuccess() {
				p.log.Debug("parker notice refused", "parker", parker, "status", res.StatusCode)
			}
		})
	}
}

// targets are where to reach a URI: an extension of this PBX is its
// registered phones, anything else is itself.
func (p *PBX) targets(uri string) []Binding {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return nil
	}
	if p.users.Exists(u.User) && p.isLocalHost(u) {
		return p.reg.Contacts(u.User)
	}
	return []Binding{{Contact: u}}
}

// isLocalHost reports whether a URI names this PBX: its address, or no
// port and its IP.
func (p *PBX) isLocalHost(u sip.Uri) bool {
	if u.Host != p.addr.Addr().String() {
		return false
	}
	return u.Port == 0 || u.Port == int(p.addr.Port())
}

// dial is the lot's Dialer: a recall rings the parker's registered phones,
// the fallback rings its extension's phones or its URI. The caller ID shows
// the orbit, so the phone says which parked call is coming back.
func (p *PBX) dial(ctx context.Context, req park.DialRequest) (park.Answer, error) {
	targets := p.targets(req.Target)
	if len(targets) == 0 {
		return nil, fmt.Errorf("%s: no registered phone", req.Target)
	}
	from := identity("Park "+string(req.Call.Orbit), p.URI(string(req.Call.Orbit)))
	l, err := p.ringLeg(ctx, targets, from, req.Target, nil)
	if err != nil {
		return nil, err
	}
	return answeredRecall{l}, nil
}

// answeredRecall is a recall or fallback call someone answered.
type answeredRecall struct{ l *sipadapter.Leg }

// Connect bridges the parked leg with the answered call.
func (a answeredRecall) Connect(_ context.Context, parked park.Leg) error {
	pl, ok := parked.(*sipadapter.Leg)
	if !ok {
		return fmt.Errorf("pbx: cannot connect a %T", parked)
	}
	return sipadapter.Bridge(pl, a.l)
}

// Hangup ends an answered call the lot has no use for.
func (a answeredRecall) Hangup(ctx context.Context) error {
	return a.l.Hangup(ctx)
}
