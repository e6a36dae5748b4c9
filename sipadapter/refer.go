package sipadapter

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// ServeRefer re-parks the other party of a call the server relays (a retrieved
// or recalled call) when one side transfers it to the park extension or to a
// free orbit (RFC 3515): 202, NOTIFY 100 Trying, then a final NOTIFY whose
// sipfrag is 200 OK with X-Park-Orbit, or the failure (486 when the lot is
// full or the orbit taken, and the call stays bridged).
func (e *Engine) ServeRefer(req *sip.Request, tx sip.ServerTransaction) {
	l := e.lookup(req)
	if l == nil {
		e.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	referTo := req.ReferTo()
	if referTo == nil {
		e.reply(req, tx, sip.StatusBadRequest, "Bad Request", Warning("REFER without Refer-To"))
		return
	}
	l.WaitSettled(2 * time.Second) // a REFER may follow the ACK of a retrieve at once
	other := l.Peer()
	if other == nil {
		e.reply(req, tx, sip.StatusForbidden, "Forbidden", Warning("only a bridged call can be re-parked"))
		return
	}
	directed, found := referTarget(referTo, e.cfg.ParkExtension, e.table)
	status := 0
	if !found {
		status = sip.StatusNotFound
	}
	parker := ReferredBy(req)
	if parker == "" {
		parker = fromURI(req)
	}
	referCSeq := req.CSeq().SeqNo
	// The party is parked before the 202 goes out, not after: the referrer
	// may hang up the moment it has the 202 (the contract calls that
	// normal), and its BYE must find the party out of the bridge already,
	// or it would be passed on and hang up the call being parked.
	var call *park.Call
	var err error
	if status == 0 {
		call, err = e.repark(other, l, directed, parker)
	}
	e.reply(req, tx, sip.StatusAccepted, "Accepted")

	e.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(e.tasksCtx, 10*time.Second)
		defer cancel()
		e.notifyRefer(ctx, l, referCSeq, StatusSipfrag(sip.StatusTrying, "Trying"), false)
		if status != 0 {
			e.notifyRefer(ctx, l, referCSeq, StatusSipfrag(status, "Not Found"), true)
			return
		}
		if err != nil {
			code, reason, _ := StatusFor(err)
			e.log.Info("re-park refused", "orbit", directed, "referrer", l.Party(), "status", code, "why", err)
			e.notifyRefer(ctx, l, referCSeq, StatusSipfrag(code, reason), true)
			return
		}
		e.log.Info("re-parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", other.Party(), "parker", parker)
		e.notifyRefer(ctx, l, referCSeq, ParkedSipfrag(call.Orbit()), true)
		if parker != "" {
			e.notifyParker(parker, call.Orbit())
		}
	})
}

// referTarget reads where a REFER's Refer-To sends the other party: the
// park extension (found, directed empty: any free orbit), an orbit of table
// served here (found, directed names it), or anywhere else (not found: the
// final NOTIFY says 404). Only the URI's user part counts, %-escapes
// decoded (URIUser), as for the Request-URI of an INVITE. A Replaces in the URI's headers (?Replaces=...) is ignored: it asks
// the referred party to take over a dialog (attended transfer, flow 5b),
// and the server, which keeps the parties' dialogs itself, is never that
// party.
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

// repark takes party out of its bridge with referrer and parks it. On
// failure the bridge is put back as it was.
func (e *Engine) repark(party, referrer *Leg, directed orbit.Orbit, parker string) (*park.Call, error) {
	// Unlink first: the referrer's BYE, which follows, must not reach the
	// party once it is parked.
	Unbridge(party, referrer)
	call, err := e.lot.Park(context.Background(), park.ParkRequest{Leg: party, Orbit: directed, Parker: parker, Party: party.Party()})
	if err != nil {
		if berr := e.bridge(party, referrer); berr != nil {
			// One of them hung up meanwhile. The party would otherwise
			// stay open, alone, until Shutdown; the referrer hears the
			// failure in its final NOTIFY and hangs up as transferors do.
			e.log.Info("could not restore the bridge after a refused re-park", "err", berr)
			party.Hangup(context.Background())
		}
		return nil, err
	}
	if !party.SetParked(call) {
		// The party hung up between the unbridge and the park: its BYE
		// found no call to abandon, so abandon it here.
		call.Abandon()
	}
	return call, nil
}

// notifyRefer reports a REFER's progress to the referrer; a NOTIFY that
// fails changes nothing, so it is only logged.
func (e *Engine) notifyRefer(ctx context.Context, l *Leg, referCSeq uint32, sipfrag string, final bool) {
	if err := NotifyRefer(ctx, l.Dialog(), referCSeq, sipfrag, final); err != nil {
		e.log.Debug("refer NOTIFY failed", "who", l.Party(), "err", err)
	}
}
