package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// ServeInvite serves a new call to the park extension (park), to a free orbit
// with Referred-By (directed park), to an occupied orbit (retrieve), or with
// Replaces naming a parked call (take-over); any other new call goes to
// EngineConfig.Calls. An INVITE inside a dialog is a re-INVITE.
func (e *Engine) ServeInvite(req *sip.Request, tx sip.ServerTransaction) {
	arrived := time.Now()
	if to := req.To(); to != nil && to.Params.Has("tag") {
		e.serveReInvite(req, tx)
		return
	}
	if e.isMerged(req) {
		// A late copy of an INVITE that already made a dialog (RFC 3261
		// §8.2.2.2): its transaction has ended, so it would park twice.
		e.reply(req, tx, sip.StatusLoopDetected, "Loop Detected")
		return
	}
	party, ok := "", false
	if req.GetHeader(forwardedHeader) != nil && e.isOrbit(orbit.Orbit(URIUser(req.Recipient))) &&
		e.cfg.TrustForwarded != nil && e.cfg.TrustForwarded(requestSource(req)) {
		party, ok = fromURI(req), true // admitted by the node that forwarded it
	} else if party, ok = e.admit(req, tx); !ok {
		return
	}
	user := URIUser(req.Recipient)
	var directed orbit.Orbit
	retrieve := false
	var replaced *callLeg
	if hs := req.GetHeaders("Replaces"); len(hs) > 0 {
		if len(hs) > 1 {
			e.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("more than one Replaces header"))
			return
		}
		if replaced = e.replaceable(hs[0].Value()); replaced == nil {
			e.log.Info("refused", "user", user, "from", party, "status", 481, "why", "Replaces names no parked call")
			e.reply(req, tx, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
			return
		}
	}
	source := requestSource(req)
	switch {
	case replaced != nil:
	case user == e.cfg.ParkExtension:
	case e.isOrbit(orbit.Orbit(user)):
		if req.GetHeader("Referred-By") != nil {
			directed = orbit.Orbit(user)
		} else {
			retrieve = true
		}
	case e.cfg.Calls != nil:
		e.cfg.Calls(req, tx, party)
		return
	default:
		if e.refuseBlocked(req, tx, source.Addr()) {
			return
		}
		e.log.Info("refused", "user", user, "from", party, "status", 404, "why", "neither the park extension nor an orbit")
		e.countFailure(source.Addr()) // before the answer, which the next guess may follow at once
		e.reply(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	if retrieve {
		if e.refuseBlocked(req, tx, source.Addr()) {
			return
		}
		if err := e.lot.Locate(context.Background(), park.RetrieveRequest{Orbit: orbit.Orbit(user), Retriever: party, Source: source}); err != nil {
			var elsewhere *park.ElsewhereError
			if errors.As(err, &elsewhere) {
				e.crossNode(req, tx, party, elsewhere)
				return
			}
			// Nothing here: refused before any media or dialog is set up.
			code, reason, headers := e.retrieveRefused(orbit.Orbit(user), party, source, err)
			e.reply(req, tx, code, reason, headers...)
			return
		}
	}
	parker := referredBy(req)
	if parker != "" && !park.IsSIPURI(parker) {
		e.log.Info("refused", "user", user, "from", party, "status", 400, "why", "Referred-By is not a sip: URI", "referred_by", parker)
		e.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("Referred-By must be a sip: URI: recalls ring it"))
		return
	}
	// A retriever may take the port the call it retrieves kept for its
	// recall: the call leaves the lot, and its reservation with it.
	reserved := retrieve && e.keepsRecallPortAt(orbit.Orbit(user))
	l, body, ok := e.accept(req, tx, party, !retrieve, reserved)
	if !ok {
		return
	}
	switch {
	case replaced != nil:
		e.takeOver(l, parker, replaced, body, arrived)
	case retrieve:
		e.retrieve(l, orbit.Orbit(user), body, source, arrived)
	default:
		e.park(l, parker, directed, body, arrived)
	}
}

// admit asks EngineConfig.Admit who is calling; without one, the From URI.
func (e *Engine) admit(req *sip.Request, tx sip.ServerTransaction) (party string, ok bool) {
	if e.cfg.Admit == nil {
		return fromURI(req), true
	}
	return e.cfg.Admit(req, tx)
}

// accept takes the caller's side of a new INVITE: counts the dialog
// against its source (Limits), answers its offer (LegMedia.Answer; parked
// legs one-way), reads the dialog and files the leg. The 2xx goes out later
// (answer). On failure it has answered the INVITE and reports false.
func (e *Engine) accept(req *sip.Request, tx sip.ServerTransaction, party string, parked, reserved bool) (*callLeg, []byte, bool) {
	source := requestSource(req).Addr()
	user := URIUser(req.Recipient)
	if !e.guard.admitDialog(source) {
		e.log.Info("refused", "user", user, "from", party, "source", source, "status", 503, "why", "too many dialogs from one source")
		e.reply(req, tx, sip.StatusServiceUnavailable, "Service Unavailable", retryAfter(),
			warning(fmt.Sprintf("too many calls from %s", source)))
		return nil, nil, false
	}
	// The media first: a refused offer (or a delayed offer when those are
	// off) must not leave a dialog behind.
	cfg, body, err := e.media.Answer(req, parked, reserved)
	if err != nil {
		e.guard.releaseDialog(source)
		var refusal *mediaRefusal
		errors.As(err, &refusal)
		if refusal.Overload {
			e.log.Warn("refused", "user", user, "from", party, "status", refusal.Code, "why", refusal.Err)
		} else {
			e.log.Info("refused", "user", user, "from", party, "status", refusal.Code, "why", refusal.Err)
		}
		e.reply(req, tx, refusal.Code, refusal.Reason, refusal.Headers...)
		return nil, nil, false
	}
	sess, err := e.uaForRequest(req).ReadInvite(req, tx)
	if err != nil {
		e.guard.releaseDialog(source)
		e.ports.freeEndpoint(cfg.Endpoint)
		e.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning(err.Error()))
		return nil, nil, false
	}
	cfg.Dialog, cfg.Party = serverDialog(sess, e.dialogUA.Client), party
	l := e.newLeg(cfg)
	e.countAgainst(l, source)
	return l, body, true
}

// replaceable finds the parked leg a Replaces header value names (RFC 3891:
// call-id;to-tag=<our tag>;from-tag=<their tag>), or nil: a value that
// names no dialog, or none of ours, is the same 481 to the phone.
func (e *Engine) replaceable(value string) *callLeg {
	callID, toTag, fromTag, err := parseReplaces(value)
	if err != nil {
		e.log.Debug("bad Replaces", "err", err)
		return nil
	}
	e.mu.Lock()
	l := e.legs[dialogKey(callID, toTag, fromTag)]
	e.mu.Unlock()
	if l == nil {
		return nil
	}
	if l.Parked() == nil || l.Closed() {
		return nil
	}
	return l
}

// takeOver is the attended transfer into park: the caller of l replaces the
// parked leg old, keeping its orbit and timer; old gets BYE.
func (e *Engine) takeOver(l *callLeg, parker string, old *callLeg, answer []byte, arrived time.Time) {
	// Detach the call from old first: old's BYE, sent by Replace or by the
	// phone itself, must not end the call that now belongs to l.
	call := old.TakeParked()
	if call == nil { // another take-over got there first
		e.refuse(l, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
		return
	}
	if parker == "" && call.Info().Parker == "" {
		parker = ringable(old.Party()) // the consult call came from the parker
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := call.Replace(ctx, park.ReplaceRequest{Leg: l, Parker: parker, Party: l.Party()}); err != nil {
		old.SetParked(call)
		e.log.Info("take-over refused", "from", l.Party(), "status", 481, "why", err)
		e.refuse(l, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
		return
	}
	e.metrics.answered("park", arrived)
	if !e.answerParked(l, call, answer) {
		return
	}
	e.announceParked(l, call.Orbit())
	e.log.Info("parked by take-over (Replaces)", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party(), "parker", call.Info().Parker)
}

// park parks the caller of l: 200 OK with the orbit, music after the ACK.
func (e *Engine) park(l *callLeg, parker string, directed orbit.Orbit, answer []byte, arrived time.Time) {
	ctx := context.Background()
	call, err := e.parkLeg(ctx, park.ParkRequest{Leg: l, Orbit: directed, Parker: parker, Party: l.Party()})
	if err != nil {
		code, reason, headers := statusFor(err)
		e.log.Info("park refused", "from", l.Party(), "orbit", directed, "status", code, "why", err)
		e.refuse(l, code, reason, headers...)
		return
	}
	e.metrics.answered("park", arrived)
	if !e.answerParked(l, call, answer) {
		return
	}
	e.announceToParker(l, call.Orbit())
	e.log.Info("parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party(), "parker", parker)
	if parker != "" {
		e.notifyParker(parker, call.Orbit())
	}
}

// answerParked sends the 200 OK with X-Park-Orbit for a call the lot now
// holds in l, and starts its music once the ACK is in. Without an ACK the
// caller is gone: the call is abandoned, its orbit free at once.
func (e *Engine) answerParked(l *callLeg, call *park.Call, answer []byte) bool {
	l.SetParked(call)
	uas := l.Dialog().ServerSession()
	res := sip.NewSDPResponseFromRequest(uas.InviteRequest, answer)
	res.AppendHeader(sip.NewHeader("X-Park-Orbit", string(call.Orbit())))
	if err := uas.WriteResponse(res); err != nil {
		e.log.Info("parked caller gone before ACK", "orbit", call.Orbit(), "park_id", call.ID(), "err", err)
		call.Abandon()
		l.Close()
		return false
	}
	if err := l.LateOfferErr(); err != nil {
		// No media can flow: the call ends as if the party had left, and
		// gets the BYE RFC 3261 §13.3.1.4 asks for.
		e.log.Info("parked call ended: its ACK did not answer our offer", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party(), "err", err)
		call.Abandon()
		l.Hangup(context.Background())
		return false
	}
	l.Confirm()
	return true
}

// refuse answers a new leg's INVITE with a final error and frees the leg.
func (e *Engine) refuse(l *callLeg, code int, reason string, headers ...sip.Header) {
	e.metrics.refused(code, reason)
	if err := l.Dialog().ServerSession().Respond(code, reason, nil, headers...); err != nil {
		e.log.Debug("refusal not sent", "err", err)
	}
	l.Close()
}

// retrieveRefused logs a retrieve the lot refused, counts a 404 against
// its source (before the answer, which the next guess may follow at once)
// and returns the answer to give.
func (e *Engine) retrieveRefused(o orbit.Orbit, party string, source netip.AddrPort, err error) (int, string, []sip.Header) {
	code, reason, headers := statusFor(err)
	e.log.Info("retrieve refused", "orbit", o, "from", party, "source", source.Addr(), "status", code, "why", err)
	if code == sip.StatusNotFound {
		e.countFailure(source.Addr())
	}
	return code, reason, headers
}

// retrieve hands the call parked in o to the caller of l and bridges them.
func (e *Engine) retrieve(l *callLeg, o orbit.Orbit, answer []byte, source netip.AddrPort, arrived time.Time) {
	got, err := e.lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: o, Retriever: l.Party(), Source: source})
	if err != nil {
		code, reason, headers := e.retrieveRefused(o, l.Party(), source, err)
		e.refuse(l, code, reason, headers...)
		return
	}
	parked := got.Leg().(*callLeg)
	e.metrics.answered("retrieve", arrived)
	if err := e.answerAndBridge(l, answer, parked); err != nil {
		// The retriever hung up at once (its BYE overtook its ACK), its ACK
		// did not answer our offer, or a party left before the bridge:
		// nobody is left to give the call to, so both sides end (outcome
		// retrieved, as the lot says).
		e.log.Info("retrieve failed; hanging up both", "orbit", o, "park_id", got.ID(), "err", err)
		return
	}
	e.log.Info("retrieved", "orbit", o, "park_id", got.ID(), "party", parked.Party(), "retriever", l.Party())
}

// answerAndBridge answers a new leg's INVITE (the 2xx, then its ACK) and
// bridges it with other: a retrieve, a call between extensions. Answer
// first, then bridge, for every host: a delayed offer's codec is known only
// from the ACK. On failure both legs are hung up (or freed, when their party
// is gone) and the reason returned.
func (e *Engine) answerAndBridge(l *callLeg, answer []byte, other *callLeg) error {
	uas := l.Dialog().ServerSession()
	if err := uas.WriteResponse(sip.NewSDPResponseFromRequest(uas.InviteRequest, answer)); err != nil {
		other.Hangup(context.Background())
		l.Close()
		return fmt.Errorf("the caller left before its ACK: %w", err)
	}
	if err := l.LateOfferErr(); err != nil {
		other.Hangup(context.Background())
		l.Hangup(context.Background())
		return err
	}
	l.Confirm()
	if err := e.bridge(other, l); err != nil {
		other.Hangup(context.Background())
		l.Hangup(context.Background())
		return err
	}
	return nil
}

// refuseBlocked answers 403 to a retrieve (or an INVITE to an unknown user)
// from a source that went over Limits.FailedRetrieves, and reports whether
// it did.
func (e *Engine) refuseBlocked(req *sip.Request, tx sip.ServerTransaction, src netip.Addr) bool {
	blocked, until := e.guard.blocked(src)
	if !blocked {
		return false
	}
	e.log.Info("refused", "user", req.Recipient.User, "from", fromURI(req), "source", src, "status", 403, "why", "too many failed retrieves")
	e.reply(req, tx, sip.StatusForbidden, "Forbidden", blockedWarning(src, until))
	return true
}

// countFailure counts a 404 against src and logs the moment it blocks it.
func (e *Engine) countFailure(src netip.Addr) {
	if e.guard.failedRetrieve(src) {
		e.log.Warn("source blocked: too many failed retrieves", "source", src,
			"failures", e.cfg.Limits.FailedRetrieves, "window", e.cfg.Limits.FailedRetrieveWindow, "block", e.cfg.Limits.FailedRetrieveBlock)
	}
}

// serveReInvite answers an offer inside a dialog (holds, resumes, address or
// codec changes) from the leg's own media; a parked leg keeps answering
// one-way.
func (e *Engine) serveReInvite(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		e.reply(req, tx, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
		return
	}
	l.ServeReInvite(req, tx)
}

func (e *Engine) ServeAck(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		return
	}
	// The answer to a late offer comes first, so the media is set up by
	// the time the dialog reads the ACK and the 200's sender goes on.
	l.ReadAckAnswer(req)
	// A re-INVITE's ACK carries a later CSeq than the dialog's INVITE; the
	// session rejects it, which is harmless: the dialog is confirmed.
	if uas := l.Dialog().ServerSession(); uas != nil {
		_ = uas.ReadAck(req, tx)
	}
}

// ServeBye ends a leg: a parked party leaves its orbit (any recall is
// cancelled), a bridged party's peer gets a BYE too.
func (e *Engine) ServeBye(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		e.reply(req, tx, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
		return
	}
	call, peer := l.ServeBye(req, tx)
	if call != nil {
		e.log.Info("hung up while parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", l.Party())
	}
	if peer != nil {
		e.log.Info("hung up", "party", l.Party(), "peer", peer.Party())
		peer.Hangup(context.Background())
	}
}
