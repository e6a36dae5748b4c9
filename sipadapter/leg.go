package sipadapter

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// newLeg builds a leg of the server's and files it under its dialog key;
// it forgets itself and frees its RTP port when it closes.
func (s *Server) newLeg(cfg LegConfig) *Leg {
	cfg.ParkedOneWay = true // the contract: a parked leg only hears music
	cfg.Ports = s.ports
	cfg.OnClose = s.forget
	cfg.Logger = s.log
	l, err := NewLeg(cfg)
	if err != nil {
		panic(err) // the server always fills Dialog, Endpoint and SDP
	}
	s.remember(l)
	return l
}

// bridge joins two legs (Bridge) and gives two-way audio back to a leg
// that was answered one-way while parked: a re-INVITE offering sendrecv
// (RFC 3264 §8). If either leg hung up meanwhile nothing is bridged and
// ErrLegGone returned; the caller hangs up the other.
func (s *Server) bridge(a, b *Leg) error {
	if err := Bridge(a, b); err != nil {
		return err
	}
	for _, l := range []*Leg{a, b} {
		if l.Direction() != media.SendRecv {
			s.tasks.Go(func() {
				ctx, cancel := context.WithTimeout(s.tasksCtx, 10*time.Second)
				defer cancel()
				if err := l.Reoffer(ctx, media.SendRecv); err != nil {
					s.log.Info("re-INVITE for two-way audio failed", "who", l.Party(), "err", err)
				}
			})
		}
	}
	return nil
}

// remember registers a leg under its dialog key.
func (s *Server) remember(l *Leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.legs[l.Key()] = l
	if k, ok := inviteKey(l); ok {
		s.invites[k] = l
	}
}

func (s *Server) forget(l *Leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legs[l.Key()] == l {
		delete(s.legs, l.Key())
	}
	if k, ok := inviteKey(l); ok && s.invites[k] == l {
		delete(s.invites, k)
	}
	if src, ok := s.legSources[l]; ok {
		delete(s.legSources, l)
		s.guard.releaseDialog(src)
	}
}

// countAgainst makes l's dialog the one admitDialog counted for src, to be
// released when l closes. A leg closed already releases at once.
func (s *Server) countAgainst(l *Leg, src netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legs[l.Key()] != l {
		s.guard.releaseDialog(src)
		return
	}
	s.legSources[l] = src
}

// inviteKey names the INVITE a leg the server answered came from: Call-ID,
// From tag and CSeq, what RFC 3261 §8.2.2.2 compares to detect a merged
// request. False for a leg the server placed.
func inviteKey(l *Leg) (string, bool) {
	uas := l.Dialog().ServerSession()
	if uas == nil {
		return "", false
	}
	return requestInviteKey(uas.InviteRequest)
}

func requestInviteKey(req *sip.Request) (string, bool) {
	callID, from, cseq := req.CallID(), req.From(), req.CSeq()
	if callID == nil || from == nil || cseq == nil {
		return "", false
	}
	tag, _ := from.Params.Get("tag")
	return callID.Value() + "\x00" + tag + "\x00" + strconv.FormatUint(uint64(cseq.SeqNo), 10), true
}

// isMerged reports whether req, an INVITE outside any dialog, is a copy of
// one that already made a leg.
func (s *Server) isMerged(req *sip.Request) bool {
	k, ok := requestInviteKey(req)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, found := s.invites[k]
	return found
}

// lookup finds the leg an in-dialog request belongs to: To carries our tag,
// From theirs, whichever side began the dialog.
func (s *Server) lookup(req *sip.Request) *Leg {
	key, ok := RequestKey(req)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[key]
}

// Dial rings a recall or fallback target over SIP, as a park.Dialer: an
// INVITE with an offer from a new RTP port, CANCELled when ctx ends first.
// The answered call's Connect bridges it with a parked leg of this server.
// A host that brings its own lot wires it in with park.DialerFunc(srv.Dial).
func (s *Server) Dial(ctx context.Context, req park.DialRequest) (park.Answer, error) {
	var target sip.Uri
	if err := sip.ParseUri(req.Target, &target); err != nil {
		return nil, fmt.Errorf("target %q: %w", req.Target, err)
	}
	ep, sdp, err := s.media.Offering()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (park.Answer, error) {
		s.ports.FreeEndpoint(ep)
		return nil, err
	}
	offer, err := sdp.Offer(media.SendRecv)
	if err != nil {
		return fail(err)
	}
	from := sip.FromHeader{
		DisplayName: "Park " + string(req.Call.Orbit),
		Address:     sipURI(string(req.Call.Orbit), s.addr),
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
	sess, err := s.dialogUA.WriteInvite(ctx, invite)
	if err != nil {
		return fail(err)
	}
	if err := WaitAnswer(ctx, sess, nil); err != nil {
		sess.Close()
		return fail(err)
	}
	l, err := ConfirmAnswer(ctx, sess, offer, LegConfig{Endpoint: ep, SDP: sdp, Party: req.Target}, s.newLeg)
	if err != nil {
		return nil, err
	}
	return answeredLeg{s, l}, nil
}

func fromTag(req *sip.Request) string {
	t, _ := req.From().Params.Get("tag")
	return t
}

// answeredLeg is a recall or fallback the target answered.
type answeredLeg struct {
	s *Server
	l *Leg
}

// Connect bridges the parked leg with the answered call.
func (a answeredLeg) Connect(ctx context.Context, parked park.Leg) error {
	p, ok := parked.(*Leg)
	if !ok {
		return fmt.Errorf("sipadapter: cannot connect a %T", parked)
	}
	return a.s.bridge(p, a.l)
}

// Hangup ends an answered call the lot has no use for.
func (a answeredLeg) Hangup(ctx context.Context) error {
	return a.l.Hangup(ctx)
}
