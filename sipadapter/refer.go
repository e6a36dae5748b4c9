package sipadapter

import (
	"cmp"
	"context"
	"errors"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// ServeRefer serves a transfer (RFC 3515) by one party of a call the engine
// relays (a retrieved, recalled or connected call):
//
//   - Refer-To the park extension or a free orbit re-parks the other party;
//     the referrer (its Referred-By, else the leg's party) becomes the
//     parker.
//   - Refer-To carrying Replaces that names a call parked here (the
//     referrer's consult call to the park extension) puts the other party
//     in that call's place, orbit and timer included: attended transfer
//     into park, done by the engine itself.
//   - Refer-To a URI the host locates (EngineConfig.Locate: an extension)
//     is a blind transfer there.
//
// The answer is 202, NOTIFY 100 Trying, then a final NOTIFY whose sipfrag is
// 200 OK (with X-Park-Orbit for a park) or the failure: 486 when the lot is
// full or the orbit taken, 404 for a target that is none of these; the call
// then stays bridged as it was. A park is done before the 202, so that a
// referrer hanging up at the 202 (normal) cannot end the call being parked.
func (e *Engine) ServeRefer(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		e.reply(req, tx, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
		return
	}
	referTo := req.ReferTo()
	if referTo == nil {
		e.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("REFER without Refer-To"))
		return
	}
	l.WaitSettled(2 * time.Second) // a REFER may follow the ACK of a retrieve at once
	other := l.Peer()
	if other == nil {
		e.reply(req, tx, sip.StatusForbidden, "Forbidden", warning("only a bridged call can be transferred"))
		return
	}
	parker := e.referrer(req, l)
	referCSeq := req.CSeq().SeqNo

	var job func(ctx context.Context) (string, error)
	parking := true
	directed, toPark := referTarget(referTo, e.cfg.ParkExtension, e.table.Load())
	switch replaced := e.referReplaces(referTo); {
	case replaced != nil:
		job = func(ctx context.Context) (string, error) { return e.takeOverByRefer(ctx, other, l, replaced, parker) }
	case toPark:
		job = func(context.Context) (string, error) { return e.repark(other, l, directed, parker) }
	default:
		targets, found := e.locate(referTo.Address)
		if !found {
			job = func(context.Context) (string, error) { return "", errNoReferTarget }
			break
		}
		parking = false
		user := URIUser(referTo.Address)
		job = func(ctx context.Context) (string, error) { return e.transfer(ctx, other, l, targets, user) }
	}
	// A park (or take-over) is done before the 202, not after: the
	// referrer may hang up the moment it has the 202 (the contract calls
	// that normal), and its BYE must find the party out of the bridge
	// already, or it would be passed on and hang up the call being parked.
	// A transfer rings for a while, so it runs after.
	var frag string
	var err error
	if parking {
		frag, err = job(e.tasksCtx)
	}
	e.reply(req, tx, sip.StatusAccepted, "Accepted")
	e.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(e.tasksCtx, 10*time.Second+e.cfg.RingTime)
		defer cancel()
		e.notifyRefer(ctx, l, referCSeq, statusSipfrag(sip.StatusTrying, "Trying"), false)
		if !parking {
			ringCtx, cancelRing := context.WithTimeout(ctx, e.cfg.RingTime)
			defer context.AfterFunc(e.callsCtx, cancelRing)()
			frag, err = job(ringCtx)
			cancelRing()
		}
		if err != nil {
			code, reason := transferStatus(err)
			e.log.Info("transfer refused", "referrer", l.Party(), "to", referTo.Address.String(), "status", code, "why", err)
			frag = statusSipfrag(code, reason)
		}
		e.notifyRefer(ctx, l, referCSeq, frag, true)
	})
}

// referrer names the parker of a call parked by req, a REFER on leg l: the
// leg's own party when the host knows it (Locate: a PBX's authenticated
// extension, all of whose phones a recall rings), else the REFER's
// Referred-By, else the leg's party; "" when none can be rung.
func (e *Engine) referrer(req *sip.Request, l *callLeg) string {
	party := ringable(l.Party())
	var u sip.Uri
	if party != "" && sip.ParseUri(party, &u) == nil {
		if _, known := e.locate(u); known {
			return party
		}
	}
	return cmp.Or(ringable(referredBy(req)), party)
}

// errNoReferTarget is a Refer-To that names nothing the engine can send a
// call to (404 in the final NOTIFY).
var errNoReferTarget = errors.New("sipadapter: Refer-To names neither the park extension, an orbit, nor a known user")

// transferStatus is the sipfrag status of a REFER that failed.
func transferStatus(err error) (int, string) {
	var rejected *RejectedError
	switch {
	case errors.Is(err, errNoReferTarget):
		return sip.StatusNotFound, "Not Found"
	case errors.As(err, &rejected):
		return rejected.Code, rejected.Reason
	case errors.Is(err, errLegGone):
		return sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog
	case errors.Is(err, park.ErrLotFull), errors.Is(err, park.ErrOrbitInUse), errors.Is(err, park.ErrClosed),
		errors.Is(err, park.ErrNotParked), errors.Is(err, park.ErrUnknownOrbit), errors.Is(err, orbit.ErrUnavailable):
		code, reason, _ := statusFor(err)
		return code, reason
	}
	return failureStatus(err)
}

// referTarget reads where a REFER's Refer-To parks the other party: the
// park extension (found, directed empty: any free orbit), an orbit of table
// served here (found, directed names it), or not into the lot (not found).
// Only the URI's user part counts, %-escapes decoded (URIUser), as for the
// Request-URI of an INVITE. A Replaces in the URI's headers (?Replaces=...)
// plays no part here: referReplaces reads it.
func referTarget(referTo *sip.ReferToHeader, parkExt string, table *orbit.Table) (directed orbit.Orbit, found bool) {
	user := URIUser(referTo.Address)
	switch {
	case user == parkExt:
		return "", true
	case servesOrbit(table, orbit.Orbit(user)):
		return orbit.Orbit(user), true
	}
	return "", false
}

// referReplaces returns the parked leg a Refer-To's Replaces names, or nil:
// no Replaces, or one naming no call parked here, which is then ignored (the
// Refer-To's user routes the transfer as without it).
func (e *Engine) referReplaces(referTo *sip.ReferToHeader) *callLeg {
	if referTo.Address.Headers == nil {
		return nil
	}
	v, ok := referTo.Address.Headers.Get("Replaces")
	if !ok {
		return nil
	}
	return e.replaceable(v)
}

// repark takes party out of its bridge with referrer and parks it. On
// failure the bridge is put back as it was.
func (e *Engine) repark(party, referrer *callLeg, directed orbit.Orbit, parker string) (string, error) {
	// Unlink first: the referrer's BYE, which follows, must not reach the
	// party once it is parked.
	unbridge(party, referrer)
	call, err := e.parkLeg(context.Background(), park.ParkRequest{Leg: party, Orbit: directed, Parker: parker, Party: party.Party()})
	if err != nil {
		e.rebridge(party, referrer, err)
		return "", err
	}
	if !party.SetParked(call) {
		// The party hung up between the unbridge and the park: its BYE
		// found no call to abandon, so abandon it here.
		call.Abandon()
	} else {
		e.announceParked(party, call.Orbit())
	}
	e.recordDevice(call, parker, referrer)
	e.log.Info("re-parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", party.Party(), "parker", parker)
	e.notifyParker(parker, call.Orbit())
	return parkedSipfrag(call.Orbit()), nil
}

// rebridge puts a call back together after a refused park or take-over.
func (e *Engine) rebridge(party, referrer *callLeg, why error) {
	e.log.Info("transfer into park refused; the call stays as it was", "party", party.Party(), "referrer", referrer.Party(), "why", why)
	if err := e.bridge(party, referrer); err != nil {
		// One of them hung up meanwhile. The party would otherwise stay
		// open, alone, until Shutdown; the referrer hears the failure in
		// its final NOTIFY and hangs up as transferors do.
		e.log.Info("could not restore the bridge after a refused park", "err", err)
		party.Hangup(context.Background())
	}
}

// takeOverByRefer is the attended transfer into park done by REFER: the
// referrer's consult call to the park extension (replaced) holds an orbit;
// party takes its place, orbit and timer included, and the consult call
// ends.
func (e *Engine) takeOverByRefer(ctx context.Context, party, referrer, replaced *callLeg, parker string) (string, error) {
	call := replaced.TakeParked() // its BYE must no longer end the call
	if call == nil {
		return "", errLegGone
	}
	unbridge(party, referrer)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := call.Replace(ctx, park.ReplaceRequest{Leg: party, Parker: parker, Party: party.Party()}); err != nil {
		replaced.SetParked(call)
		e.rebridge(party, referrer, err)
		return "", err
	}
	party.SetParked(call)
	e.recordDevice(call, parker, referrer)
	e.log.Info("parked by attended transfer", "orbit", call.Orbit(), "park_id", call.ID(), "party", party.Party(), "parker", parker)
	e.notifyParker(parker, call.Orbit())
	return parkedSipfrag(call.Orbit()), nil
}

// transfer is a blind transfer to a located user: party's call with the
// referrer ends and party is connected to whichever of targets answers. If
// none does, party stays with the referrer.
func (e *Engine) transfer(ctx context.Context, party, referrer *callLeg, targets []Target, user string) (string, error) {
	if len(targets) == 0 {
		return "", &RejectedError{Code: sip.StatusTemporarilyUnavailable, Reason: "Temporarily Unavailable"}
	}
	target, err := e.ring(ctx, targets, identity("", party.Party()), userURI(user, e.addr), false, nil)
	if err != nil {
		return "", err
	}
	unbridge(party, referrer)
	if err := e.bridge(party, target); err != nil {
		target.Hangup(context.Background())
		return "", err
	}
	e.log.Info("transferred", "party", party.Party(), "to", user, "by", referrer.Party())
	return statusSipfrag(200, "OK"), nil
}

// notifyRefer reports a REFER's progress to the referrer; a NOTIFY that
// fails changes nothing, so it is only logged.
func (e *Engine) notifyRefer(ctx context.Context, l *callLeg, referCSeq uint32, sipfrag string, final bool) {
	if err := notifyRefer(ctx, l.Dialog(), referCSeq, sipfrag, final); err != nil {
		e.log.Debug("refer NOTIFY failed", "who", l.Party(), "err", err)
	}
}
