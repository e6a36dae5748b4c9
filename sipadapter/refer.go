package sipadapter

import (
	"context"
	"fmt"
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
		s.reply(req, tx, sip.StatusBadRequest, "Bad Request", warning("REFER without Refer-To"))
		return
	}
	l.waitBridged() // a REFER may follow the ACK of a retrieve at once
	l.mu.Lock()
	other := l.peer
	l.mu.Unlock()
	if other == nil {
		s.reply(req, tx, sip.StatusForbidden, "Forbidden", warning("only a bridged call can be re-parked"))
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
	parker := referredBy(req)
	if parker == "" {
		parker = fromURI(req)
	}
	referCSeq := req.CSeq().SeqNo
	s.reply(req, tx, sip.StatusAccepted, "Accepted")

	s.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(s.tasksCtx, 10*time.Second)
		defer cancel()
		s.notifyRefer(ctx, l, referCSeq, "SIP/2.0 100 Trying\r\n", false)
		if status != 0 {
			s.notifyRefer(ctx, l, referCSeq, fmt.Sprintf("SIP/2.0 %d Not Found\r\n", status), true)
			return
		}
		call, err := s.repark(other, l, directed, parker)
		if err != nil {
			code, reason, _ := statusFor(err)
			s.log.Info("re-park refused", "orbit", directed, "referrer", l.who, "status", code, "why", err)
			s.notifyRefer(ctx, l, referCSeq, fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reason), true)
			return
		}
		s.log.Info("re-parked", "orbit", call.Orbit(), "park_id", call.ID(), "party", other.who, "parker", parker)
		s.notifyRefer(ctx, l, referCSeq, "SIP/2.0 200 OK\r\nX-Park-Orbit: "+string(call.Orbit())+"\r\n", true)
		if parker != "" {
			s.notifyParker(parker, call.Orbit())
		}
	})
}

// repark takes party out of its bridge with referrer and parks it. On
// failure the bridge is put back as it was.
func (s *Server) repark(party, referrer *leg, directed orbit.Orbit, parker string) (*park.Call, error) {
	party.mu.Lock()
	relay := party.relay
	party.mu.Unlock()
	if relay != nil {
		relay.Close()
	}
	// Unlink first: the referrer's BYE, which follows, must not reach the
	// party once it is parked.
	party.mu.Lock()
	party.peer, party.relay = nil, nil
	party.mu.Unlock()
	referrer.mu.Lock()
	referrer.peer, referrer.relay = nil, nil
	referrer.mu.Unlock()

	call, err := s.lot.Park(context.Background(), park.ParkRequest{Leg: party, Orbit: directed, Parker: parker, Party: party.who})
	if err != nil {
		if berr := s.bridge(party, referrer); berr != nil {
			s.log.Warn("could not restore the bridge after a refused re-park", "err", berr)
		}
		return nil, err
	}
	party.mu.Lock()
	party.call = call
	party.mu.Unlock()
	return call, nil
}

// notifyRefer sends a NOTIFY of the implicit REFER subscription. A 481 to
// the final one is normal: the referrer may have hung up already.
func (s *Server) notifyRefer(ctx context.Context, l *leg, referCSeq uint32, sipfrag string, final bool) {
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req := l.newRequest(sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", fmt.Sprintf("refer;id=%d", referCSeq)))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(sipfrag))
	res, err := l.do(ctx, req)
	if err != nil {
		s.log.Debug("refer NOTIFY failed", "who", l.who, "err", err)
		return
	}
	if !res.IsSuccess() && res.StatusCode != sip.StatusCallTransactionDoesNotExists {
		s.log.Debug("refer NOTIFY refused", "who", l.who, "status", res.StatusCode)
	}
}

// newRequest starts an in-dialog request to the leg's remote target.
func (l *leg) newRequest(method sip.RequestMethod) *sip.Request {
	var target sip.Uri
	switch {
	case l.uas != nil:
		if c := l.uas.InviteRequest.Contact(); c != nil {
			target = *c.Address.Clone()
		}
	case l.uac != nil:
		if c := l.uac.InviteResponse.Contact(); c != nil {
			target = *c.Address.Clone()
		}
	}
	return sip.NewRequest(method, target)
}

// do sends an in-dialog request and waits for its final response.
func (l *leg) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if l.uas != nil {
		return l.uas.Do(ctx, req)
	}
	return l.uac.Do(ctx, req)
}
