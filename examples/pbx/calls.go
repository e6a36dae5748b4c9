package main

import (
	"context"
	"errors"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/sipadapter"
)

// onInvite routes a new call by its Request-URI user: the park extension
// parks the caller, an orbit retrieves (or, with Referred-By, parks into
// it), an extension rings that extension's phones. An INVITE inside a
// dialog is a re-INVITE.
func (p *PBX) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		p.onReInvite(req, tx)
		return
	}
	if !p.enter() {
		sipadapter.Reply(p.log, req, tx, sip.StatusServiceUnavailable, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return
	}
	defer p.handlers.Done()
	caller, ok := p.auth.Authenticate(req, tx)
	if !ok {
		return
	}
	user := sipadapter.URIUser(req.Recipient)
	switch {
	case user == p.cfg.ParkExtension:
		p.parkCaller(req, tx, caller, "")
	case p.isOrbit(user) && req.GetHeader("Referred-By") != nil:
		p.parkCaller(req, tx, caller, orbit.Orbit(user))
	case p.isOrbit(user):
		p.retrieve(req, tx, caller, orbit.Orbit(user))
	case p.users.Exists(user):
		p.connect(req, tx, caller, user)
	default:
		p.log.Info("call refused", "from", caller, "to", user, "status", 404)
		sipadapter.Reply(p.log, req, tx, sip.StatusNotFound, "Not Found")
	}
}

// acceptLeg takes the caller's side of a new call: parses its offer, binds
// an RTP port and prepares the SDP answer, which goes out with the 2xx
// later. On failure it has answered the INVITE and returns nil.
func (p *PBX) acceptLeg(req *sip.Request, tx sip.ServerTransaction, party string) (*sipadapter.Leg, []byte) {
	cfg, answer, refusal := p.media.Answer(req, false)
	if refusal != nil {
		if refusal.Overload {
			p.log.Warn("call refused", "from", party, "status", refusal.Code, "why", refusal.Err)
		} else {
			p.log.Info("call refused", "from", party, "status", refusal.Code, "why", refusal.Err)
		}
		sipadapter.Reply(p.log, req, tx, refusal.Code, refusal.Reason, refusal.Headers...)
		return nil, nil
	}
	sess, err := p.dialogUA.ReadInvite(req, tx)
	if err != nil {
		p.ports.FreeEndpoint(cfg.Endpoint)
		sipadapter.Reply(p.log, req, tx, sip.StatusBadRequest, "Bad Request", sipadapter.Warning(err.Error()))
		return nil, nil
	}
	cfg.Dialog, cfg.Party = sipadapter.ServerDialog(sess), party
	return p.newLeg(cfg), answer
}

// answer sends the 2xx of a leg's INVITE and waits for the ACK; false
// means the caller is gone and the leg has been freed.
func (p *PBX) answer(l *sipadapter.Leg, sdp []byte, headers ...sip.Header) bool {
	uas := l.Dialog().ServerSession()
	res := sip.NewSDPResponseFromRequest(uas.InviteRequest, sdp)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := uas.WriteResponse(res); err != nil {
		p.log.Info("caller gone before the ACK", "party", l.Party(), "err", err)
		l.Close()
		return false
	}
	l.Confirm()
	return true
}

// refuse answers a leg's INVITE with a final error and frees the leg.
func (p *PBX) refuse(l *sipadapter.Leg, code int, reason string, headers ...sip.Header) {
	if err := l.Dialog().ServerSession().Respond(code, reason, nil, headers...); err != nil {
		p.log.Debug("refusal not sent", "err", err)
	}
	l.Close()
}

// connect is a call between two extensions: the caller's leg waits while
// every registered phone of the callee rings; the first to answer gets the
// call, and the two legs are bridged.
func (p *PBX) connect(req *sip.Request, tx sip.ServerTransaction, caller, callee string) {
	contacts := p.reg.Contacts(callee)
	if len(contacts) == 0 {
		p.log.Info("call refused", "from", caller, "to", callee, "status", 480, "why", "not registered")
		sipadapter.Reply(p.log, req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		return
	}
	a, answer := p.acceptLeg(req, tx, p.URI(caller))
	if a == nil {
		return
	}
	uas := a.Dialog().ServerSession()
	ctx, cancel := context.WithTimeout(uas.Context(), p.cfg.RingTimeout)
	defer cancel()
	defer context.AfterFunc(p.callsCtx, cancel)()
	// The caller hears ringing once, and never after its final answer: a
	// losing phone's 180 may come late, and sipgo's session must not be
	// sent two responses at once.
	var ringback struct {
		sync.Mutex
		over bool
	}
	from := identity(req.From().DisplayName, p.URI(caller))
	b, err := p.ringLeg(ctx, contacts, from, p.URI(callee), func() {
		ringback.Lock()
		defer ringback.Unlock()
		if ringback.over {
			return
		}
		ringback.over = true
		if err := uas.Respond(sip.StatusRinging, "Ringing", nil); err != nil {
			p.log.Debug("180 not sent", "err", err)
		}
	})
	ringback.Lock()
	ringback.over = true
	ringback.Unlock()
	if err != nil {
		if uas.Context().Err() != nil {
			p.log.Info("caller cancelled", "from", caller, "to", callee)
			a.Close() // the transaction layer has answered 487
			return
		}
		code, reason := failureStatus(err)
		p.log.Info("call failed", "from", caller, "to", callee, "status", code, "why", err)
		p.refuse(a, code, reason)
		return
	}
	// Bridged before the 2xx, so that a REFER right after the ACK finds
	// the call whole.
	if err := sipadapter.Bridge(a, b); err != nil {
		p.log.Info("call ended before it was bridged", "from", caller, "to", callee, "err", err)
		p.refuse(a, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		b.Hangup(context.Background())
		return
	}
	if !p.answer(a, answer) {
		b.Hangup(context.Background())
		return
	}
	p.log.Info("call connected", "from", caller, "to", callee)
}

// failureStatus is what a caller hears when no phone took the call.
func failureStatus(err error) (int, string) {
	var rejected *sipadapter.RejectedError
	switch {
	case errors.As(err, &rejected) && (rejected.Code == sip.StatusBusyHere || rejected.Code == 600):
		return sip.StatusBusyHere, "Busy Here"
	case errors.As(err, &rejected) && rejected.Code == 603:
		return 603, "Decline"
	case errors.Is(err, sipadapter.ErrNoRTPPort):
		return sip.StatusServiceUnavailable, "Service Unavailable"
	}
	return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
}

// identity is a From header for a call the PBX places on someone's behalf.
func identity(display, uri string) sip.FromHeader {
	var u sip.Uri
	_ = sip.ParseUri(uri, &u)
	return sip.FromHeader{DisplayName: display, Address: u, Params: sip.NewParams()}
}

// ringLeg rings targets at once (the registered phones of one extension)
// with an offer from a new RTP port. The first to answer becomes the
// returned leg, acknowledged and with its media set up; the others are
// cancelled, or hung up if they answered too. When ctx ends first, nobody
// answered.
func (p *PBX) ringLeg(ctx context.Context, targets []Binding, from sip.FromHeader, party string, onRinging func()) (*sipadapter.Leg, error) {
	ep, sdp, err := p.media.Offering()
	if err != nil {
		return nil, err
	}
	offer, err := sdp.Offer(media.SendRecv)
	if err != nil {
		p.ports.FreeEndpoint(ep)
		return nil, err
	}
	sess, err := p.fork(ctx, targets, from, offer.SDP(), onRinging)
	if err != nil {
		p.ports.FreeEndpoint(ep)
		return nil, err
	}
	return sipadapter.ConfirmAnswer(ctx, sess, offer, sipadapter.LegConfig{Endpoint: ep, SDP: sdp, Party: party}, p.newLeg)
}

// fork sends one INVITE per target and returns the first answered session,
// not yet acknowledged (the caller files the leg first). The losing INVITEs
// are cancelled; one that was answered anyway is acknowledged and hung up,
// in the background.
func (p *PBX) fork(ctx context.Context, targets []Binding, from sip.FromHeader, sdp []byte, onRinging func()) (*sipgo.DialogClientSession, error) {
	forkCtx, cancelForks := context.WithCancel(ctx)
	type result struct {
		sess *sipgo.DialogClientSession
		err  error
	}
	results := make(chan result, len(targets))
	for _, t := range targets {
		invite := sip.NewRequest(sip.INVITE, *t.Contact.Clone())
		f := sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: sip.NewParams()}
		f.Params.Add("tag", sip.GenerateTagN(16))
		invite.AppendHeader(&f)
		invite.AppendHeader(&sip.ToHeader{Address: *t.Contact.Clone(), Params: sip.NewParams()})
		invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		invite.SetBody(sdp)
		if t.Transport != "" {
			invite.SetTransport(t.Transport)
		}
		go func() {
			sess, err := p.dialogUA.WriteInvite(forkCtx, invite)
			if err != nil {
				results <- result{err: err}
				return
			}
			err = sipadapter.WaitAnswer(forkCtx, sess, func(res *sip.Response) {
				if onRinging != nil && (res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress) {
					onRinging()
				}
			})
			if err != nil {
				sess.Close()
				results <- result{err: err}
				return
			}
			results <- result{sess: sess}
		}()
	}
	var errs []error
	for left := len(targets); left > 0; left-- {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		cancelForks()
		if left > 1 {
			p.tasks.Go(func() {
				for range left - 1 {
					if late := <-results; late.sess != nil {
						if err := late.sess.Ack(p.tasksCtx); err != nil {
							p.log.Debug("ACK to a second answer failed", "err", err)
						}
						if err := late.sess.Bye(p.tasksCtx); err != nil {
							p.log.Debug("BYE to a second answer failed", "err", err)
						}
						late.sess.Close()
					}
				}
			})
		}
		return r.sess, nil
	}
	cancelForks()
	return nil, bestFailure(errs)
}

// bestFailure picks the error a caller should hear of several forks': a
// refusal (busy, decline) says more than silence.
func bestFailure(errs []error) error {
	var best error
	for _, err := range errs {
		var rejected *sipadapter.RejectedError
		if errors.As(err, &rejected) {
			if best == nil || rejected.Code == sip.StatusBusyHere || rejected.Code >= 600 {
				best = err
			}
		}
	}
	if best != nil {
		return best
	}
	return errors.Join(errs...)
}

// onReInvite answers an offer inside a dialog (hold, resume, a new address
// or codec) from the leg's own media; the other leg is not asked: the PBX
// relays whatever each side sends.
func (p *PBX) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	l := p.lookup(req)
	if l == nil {
		sipadapter.Reply(p.log, req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	l.ServeReInvite(req, tx)
}

func (p *PBX) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if l := p.lookup(req); l != nil {
		if uas := l.Dialog().ServerSession(); uas != nil {
			// A re-INVITE's ACK has a later CSeq than the dialog's INVITE
			// and the session refuses it, harmlessly.
			_ = uas.ReadAck(req, tx)
		}
	}
}

// onBye ends a leg: a parked party leaves its orbit, a bridged party's
// other half gets a BYE too.
func (p *PBX) onBye(req *sip.Request, tx sip.ServerTransaction) {
	l := p.lookup(req)
	if l == nil {
		sipadapter.Reply(p.log, req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	call, peer := l.ServeBye(req, tx)
	if call != nil {
		p.log.Info("hung up while parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party())
	}
	if peer != nil {
		peer.Hangup(context.Background())
	}
}
