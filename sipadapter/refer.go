package sipadapter

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// onRefer re-parks the other party of a call the server relays (a retrieved
// or recalled call) when one side transfers it to the park extension or to a
// free orbit (RFC 3515): 202, NOTIFY 100 Trying, then a final NOTIFY whose
// sipfrag is 200 OK with X-Park-Orbit, or the failure (486 when the lot is
// full or the orbit taken, and the call stays bridged).
func (s *Server) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	l := s.lookup(req)
	if l == nil {
		s.reply(req, tx, sip.StatusCallTransactionDoesNotExists, "Call/Transaction Does Not Exist")
		return
	}
	referTo := req.ReferTo()
	if referTo == nil {
		s.reply(req, tx, sip.StatusBadRequest, "Bad Request", Warning("REFER without Refer-To"))
		return
	}
	l.WaitSettled(2 * time.Second) // a REFER may follow the ACK of a retrieve at once
	other := l.Peer()
	if other == nil {
		s.reply(req, tx, sip.StatusForbidden, "Forbidden", Warning("only a bridged call can be re-parked"))
		return
	}
	user := referTo.Address.User
	var directed orbit.Orbit
	status := 0
	switch {
	case user == s.cfg.ParkExtension:
	case s.isOrbit(orbit.Orbit(user)):
		directed = orbit.Orbit(user)
	default:
		status = sip.StatusNotFound
	}
	parker := ReferredBy(req)
	if parker == "" {
		parker = fromURI(req)
	}
	referCSeq := req.CSeq().SeqNo
	s.reply(req, tx, sip.StatusAccepted, "Accepted")

	s.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(s.tasksCtx, 10*time.Second)
		defer cancel()
		s.notifyRefer(ctx, l, referCSeq, StatusSipfrag(sip.StatusTrying, "Trying"), false)
		if status != 0 {
			s.notifyRefer(ctx, l, referCSeq, StatusSipfrag(status, "Not Found"), true)
			return
		}
		call, err := s.repark(other, l, directed, parker)
		if err != nil {
			code, reason, _ := StatusFor(err)
			s.log.Info("re-park refused", "orbit", directed, "referrer", l.Party(), "status", code, "why", err)
			s.notifyRefer(ctx, l, referCSeq, StatusSipfrag(code, reason), true)
			return
		}
		s.log.Info("re-parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", other.Party(), "parker", parker)
		s.notifyRefer(ctx, l, referCSeq, ParkedSipfrag(call.Orbit()), true)
		if parker != "" {
			s.notifyParker(parker, call.Orbit())
		}
	})
}

// repark takes party out of its bridge with referrer and parks it. On
// failure the bridge is put back as it was.
func (s *Server) repark(party, referrer *Leg, directed orbit.Orbit, parker string) (*park.Call, error) {
	// Unlink first: the referrer's BYE, which follows, must not reach the
	// party once it is parked.
	Unbridge(party, referrer)
	call, err := s.lot.Park(context.Background(), park.ParkRequest{Leg: party, Orbit: directed, Parker: parker, Party: party.Party()})
	if err != nil {
		if berr := s.bridge(party, referrer); berr != nil {
			s.log.Warn("could not restore the bridge after a refused re-park", "err", berr)
		}
		return nil, err
	}
	party.SetParked(call)
	return call, nil
}

// notifyRefer reports a REFER's progress to the referrer; a NOTIFY that
// fails changes nothing, so it is only logged.
func (s *Server) notifyRefer(ctx context.Context, l *Leg, referCSeq uint32, sipfrag string, final bool) {
	if err := NotifyRefer(ctx, l.Dialog(), referCSeq, sipfrag, final); err != nil {
		s.log.Debug("refer NOTIFY failed", "who", l.Party(), "err", err)
	}
}
