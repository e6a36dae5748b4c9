package sipadapter

import (
	"context"
	"fmt"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// Dial rings a recall or fallback target over SIP, as a park.Dialer: an
// INVITE with an offer from a new RTP port, CANCELled when ctx ends first.
// The answered call's Connect bridges it with a parked leg of this server.
// A host that brings its own lot wires it in with park.DialerFunc(srv.Dial).
func (e *Engine) Dial(ctx context.Context, req park.DialRequest) (park.Answer, error) {
	var target sip.Uri
	if err := sip.ParseUri(req.Target, &target); err != nil {
		return nil, fmt.Errorf("target %q: %w", req.Target, err)
	}
	ep, sdp, err := e.media.Offering()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (park.Answer, error) {
		e.ports.FreeEndpoint(ep)
		return nil, err
	}
	offer, err := sdp.Offer(media.SendRecv)
	if err != nil {
		return fail(err)
	}
	from := sip.FromHeader{
		DisplayName: "Park " + string(req.Call.Orbit),
		Address:     sipURI(string(req.Call.Orbit), e.addr),
		Params:      sip.NewParams(),
	}
	from.Params.Add("tag", sip.GenerateTagN(16))
	invite := sip.NewRequest(sip.INVITE, target)
	invite.SetBody(offer.SDP())
	invite.AppendHeader(&from)
	invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	if tr, ok := target.UriParams.Get("transport"); ok && tr != "" {
		invite.SetTransport(tr)
	}
	sess, err := e.dialogUA.WriteInvite(ctx, invite)
	if err != nil {
		return fail(err)
	}
	if err := WaitAnswer(ctx, sess, nil); err != nil {
		sess.Close()
		return fail(err)
	}
	l, err := ConfirmAnswer(ctx, sess, offer, LegConfig{Endpoint: ep, SDP: sdp, Party: req.Target}, e.newLeg)
	if err != nil {
		return nil, err
	}
	return answeredLeg{e, l}, nil
}

func fromTag(req *sip.Request) string {
	t, _ := req.From().Params.Get("tag")
	return t
}

// answeredLeg is a recall or fallback the target answered.
type answeredLeg struct {
	e *Engine
	l *Leg
}

// Connect bridges the parked leg with the answered call.
func (a answeredLeg) Connect(ctx context.Context, parked park.Leg) error {
	p, ok := parked.(*Leg)
	if !ok {
		return fmt.Errorf("sipadapter: cannot connect a %T", parked)
	}
	return a.e.bridge(p, a.l)
}

// Hangup ends an answered call the lot has no use for.
func (a answeredLeg) Hangup(ctx context.Context) error {
	return a.l.Hangup(ctx)
}
