package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// leg is one SIP dialog of the server with its RTP port: a parked party, a
// retriever, or an answered recall. It is the park.Leg the lot holds.
type leg struct {
	s   *Server
	key string // dialog key in s.legs
	dlg Dialog
	uas *sipgo.DialogServerSession // the answered INVITE's session, nil for a recall
	ep  *media.Endpoint
	// who names the other party for logs (From of an INVITE, target of a
	// recall).
	who string
	sdp *media.Session  // the leg's o= line and last body across re-INVITEs
	dir media.Direction // ours, as last negotiated (under mu)
	// bridgeDone is closed once a leg meant to be bridged (a retriever, an
	// answered recall) is, or is not going to be: a REFER sent right after
	// the ACK waits for it. Nil for a parked leg.
	bridgeDone     chan struct{}
	bridgeDoneOnce sync.Once

	mu        sync.Mutex
	confirmed bool        // ACK received (UAS) or sent (UAC)
	music     *media.Clip // what to play once confirmed; nil: none
	playing   bool
	peer      *leg
	relay     *media.Relay
	call      *park.Call // while parked
	closed    bool
	closeOnce sync.Once
	byeOnce   sync.Once
	// offering is held while the server's own re-INVITE is in progress: a
	// BYE waits for it, since a phone may refuse a BYE (500) while it
	// answers an INVITE on the same dialog.
	offering sync.Mutex
}

// Hold implements park.Leg: play music once the dialog is confirmed (at once
// if it already is).
func (l *leg) Hold(_ context.Context, music *media.Clip) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.music = music
	if l.confirmed {
		return l.playLocked()
	}
	return nil
}

func (l *leg) playLocked() error {
	if l.music == nil || l.playing || l.closed {
		return nil
	}
	frames := l.music.Frames(l.ep.Codec())
	if err := l.ep.PlayMusic(frames); err != nil {
		return err
	}
	l.playing = true
	return nil
}

// confirm marks the dialog confirmed and starts the music it waits for.
func (l *leg) confirm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.confirmed = true
	if err := l.playLocked(); err != nil {
		l.s.log.Warn("hold music did not start", "who", l.who, "err", err)
	}
}

// Hangup implements park.Leg: the lot drops the call.
func (l *leg) Hangup(ctx context.Context) error {
	l.hangup(ctx)
	return nil
}

// hangup sends BYE, once, and frees the leg. A leg that is already closed
// (its party hung up) gets no BYE.
func (l *leg) hangup(ctx context.Context) {
	if l.isClosed() {
		return
	}
	l.byeOnce.Do(func() {
		l.offering.Lock()
		defer l.offering.Unlock()
		if err := l.dlg.Bye(ctx); err != nil {
			l.s.log.Debug("BYE failed", "who", l.who, "err", err)
		}
	})
	l.close()
}

// close frees the leg's media and forgets its dialog. Idempotent.
func (l *leg) close() {
	l.closeOnce.Do(func() {
		defer l.markBridged()
		l.mu.Lock()
		l.closed = true
		relay := l.relay
		l.mu.Unlock()
		if relay != nil {
			relay.Close()
		}
		l.s.ports.FreeEndpoint(l.ep)
		l.s.forget(l)
		l.dlg.Close()
	})
}

// bridge connects two legs' media: music stops, RTP is relayed (transcoded
// where the codecs differ), and a BYE on one is passed to the other. If
// either leg hung up meanwhile nothing is bridged and errLegGone returned;
// the caller hangs up the other.
func (s *Server) bridge(a, b *leg) error {
	defer a.markBridged()
	defer b.markBridged()
	relay, err := media.Bridge(a.ep, b.ep)
	if err != nil {
		if a.isClosed() || b.isClosed() {
			return errLegGone
		}
		return err
	}
	// Each leg is locked on its own; a leg that closed before it learnt of
	// the relay did not close it, so it is closed here.
	a.mu.Lock()
	aGone := a.closed
	if !aGone {
		a.peer, a.relay, a.call, a.music, a.playing = b, relay, nil, nil, false
	}
	a.mu.Unlock()
	b.mu.Lock()
	bGone := b.closed
	if !bGone {
		b.peer, b.relay, b.music, b.playing = a, relay, nil, false
	}
	b.mu.Unlock()
	if aGone || bGone {
		relay.Close()
		return errLegGone
	}
	// A parked leg was answered sendonly (it only heard music); a bridged
	// call needs audio both ways, so offer sendrecv again (RFC 3264 §8).
	for _, l := range []*leg{a, b} {
		l.mu.Lock()
		oneWay := l.dir != media.SendRecv
		l.mu.Unlock()
		if oneWay {
			s.tasks.Go(func() {
				ctx, cancel := context.WithTimeout(s.tasksCtx, 10*time.Second)
				defer cancel()
				if err := l.reoffer(ctx); err != nil {
					s.log.Info("re-INVITE for two-way audio failed", "who", l.who, "err", err)
				}
			})
		}
	}
	return nil
}

// reoffer sends a re-INVITE offering sendrecv with the leg's current codec
// and address, ACKs the answer and applies it.
func (l *leg) reoffer(ctx context.Context) error {
	l.offering.Lock()
	defer l.offering.Unlock()
	if l.isClosed() {
		return errLegGone
	}
	offer, err := l.sdp.Offer(media.SendRecv, l.ep.Codec())
	if err != nil {
		return err
	}
	req := l.dlg.NewRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.SDP())
	res, err := l.dlg.Do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("re-INVITE answered %d %s", res.StatusCode, res.Reason)
	}
	if err := l.dlg.WriteRequest(l.dlg.NewRequest(sip.ACK)); err != nil {
		return err
	}
	n, err := offer.ParseAnswer(res.Body())
	if err != nil {
		return err
	}
	if err := l.ep.Apply(n); err != nil {
		return err
	}
	l.mu.Lock()
	l.dir = n.Direction
	l.mu.Unlock()
	return nil
}

// markBridged releases whoever waits for the leg's bridge.
func (l *leg) markBridged() {
	if l.bridgeDone != nil {
		l.bridgeDoneOnce.Do(func() { close(l.bridgeDone) })
	}
}

// waitBridged waits, briefly, for a pending bridge of the leg.
func (l *leg) waitBridged() {
	if l.bridgeDone == nil {
		return
	}
	select {
	case <-l.bridgeDone:
	case <-time.After(2 * time.Second):
	}
}

func (l *leg) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// errLegGone: one side of a bridge hung up before it was made.
var errLegGone = errors.New("sipadapter: the other party hung up first")

// remember registers a leg under its dialog key.
func (s *Server) remember(l *leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.legs[l.key] = l
}

func (s *Server) forget(l *leg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.legs[l.key] == l {
		delete(s.legs, l.key)
	}
}

// lookup finds the leg an in-dialog request belongs to: To carries our tag,
// From theirs, whichever side began the dialog.
func (s *Server) lookup(req *sip.Request) *leg {
	key, ok := RequestKey(req)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.legs[key]
}

// endpointOn builds a leg's endpoint on a port already taken; on error the
// port is given back.
func (s *Server) endpointOn(conn *net.UDPConn, n media.Negotiated) (*media.Endpoint, error) {
	return s.ports.Endpoint(conn, media.EndpointOptions{
		Remote:         n.Remote,
		Codec:          n.Codec,
		PayloadType:    n.PayloadType,
		TelephoneEvent: n.TelephoneEvent,
		Scheduler:      s.sched,
		Logger:         s.log.With("component", "rtp"),
	})
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
	conn, err := s.ports.Acquire()
	if err != nil {
		return nil, err
	}
	ep, err := s.endpointOn(conn, media.Negotiated{Codec: media.PCMU})
	if err != nil {
		return nil, err
	}
	fail := func(err error) (park.Answer, error) {
		s.ports.FreeEndpoint(ep)
		return nil, err
	}
	sdp := media.NewSession(media.LocalMedia{Addr: s.sdpAddr(ep.LocalAddr().Port()), Username: "callpark"})
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
	if err := sess.Ack(ctx); err != nil {
		sess.Close()
		return fail(err)
	}
	l := &leg{s: s, dlg: ClientDialog(sess), ep: ep, who: req.Target, confirmed: true, sdp: sdp, bridgeDone: make(chan struct{})}
	l.key = l.dlg.Key()
	s.remember(l)
	n, err := offer.ParseAnswer(sess.InviteResponse.Body())
	if err == nil {
		l.dir = n.Direction
		err = ep.Apply(n)
	}
	if err != nil {
		l.hangup(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("answer SDP: %w", err)
	}
	return answeredLeg{l}, nil
}

func fromTag(req *sip.Request) string {
	t, _ := req.From().Params.Get("tag")
	return t
}

// answeredLeg is a recall or fallback the target answered.
type answeredLeg struct{ l *leg }

// Connect bridges the parked leg with the answered call.
func (a answeredLeg) Connect(ctx context.Context, parked park.Leg) error {
	p, ok := parked.(*leg)
	if !ok {
		return fmt.Errorf("sipadapter: cannot connect a %T", parked)
	}
	a.l.s.log.Debug("recall answered", "who", a.l.who)
	return a.l.s.bridge(p, a.l)
}

// Hangup ends an answered call the lot has no use for.
func (a answeredLeg) Hangup(ctx context.Context) error {
	a.l.hangup(ctx)
	return nil
}
