package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// errLegGone means a party hung up before its leg could be bridged or
// parked: the host hangs up the other side.
var errLegGone = errors.New("sipadapter: the party hung up")

// refusedError is a re-INVITE the party answered with a failure.
type refusedError struct {
	Code   int
	Reason string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("re-INVITE answered %d %s", e.Code, e.Reason)
}

// callLeg is one SIP call leg with its media: an INVITE dialog, answered or
// placed, and the RTP endpoint bound for it. The park server builds its calls
// from Legs, and so can a host's back-to-back user agent (examples/pbx does):
// the lot holds a callLeg while its party is parked (callLeg is a park.Leg), bridgeLegs
// joins two into a call, and the callLeg keeps the small rules every host would
// otherwise write again:
//
//   - hold music starts only once the dialog is confirmed (the ACK is in),
//     and stops when the leg is bridged;
//   - at most one BYE, none to a party that already hung up; a BYE does not
//     wait for our re-INVITE in progress, but leaves after it, with the
//     next CSeq (RFC 3261 §15: the party answers the pending re-INVITE 487,
//     or 200, which is still acknowledged);
//   - a REFER that follows an answer at once can wait (WaitSettled) until
//     the leg is bridged or parked;
//   - a re-INVITE is answered from the leg's own media, with the o= version
//     raised only when the answer changes.
//
// A callLeg is safe for concurrent use.
type callLeg struct {
	dlg        sipDialog
	ep         *media.Endpoint
	sdp        *media.Session
	party      string
	parkedOneW bool
	log        *slog.Logger
	ports      *PortPool
	clips      *musicClips // the lot's music, resolved once per engine
	onClose    func(*callLeg)

	settled    chan struct{}
	settleOnce sync.Once
	closeOnce  sync.Once
	// offering is held while our own re-INVITE is in progress: one at a
	// time (RFC 3261 §14.1). A BYE does not wait for it.
	offering sync.Mutex
	// sending is held while a re-INVITE takes its CSeq and goes out, and
	// while Hangup marks the leg ending: a BYE leaves after any re-INVITE
	// that began, with a higher CSeq, and none begins after it.
	sending sync.Mutex

	mu        sync.Mutex
	dir       media.Direction // ours, as last negotiated
	confirmed bool
	music     *media.Clip // what to play once confirmed; nil: none
	playing   bool
	peer      *callLeg
	relay     *media.Relay
	call      *park.Call // while parked
	closed    bool
	ending    bool          // Hangup is sending our BYE
	byeDone   chan struct{} // closed once our BYE is answered or given up
	// lateOffer is our offer in the 200 to an INVITE without SDP, until
	// the ACK answers it; lateOfferErr is why that answer was refused.
	lateOffer    *media.Offer
	lateOfferErr error
}

// legConfig describes a callLeg. sipDialog, Endpoint and SDP are required.
type legConfig struct {
	// Clips turns the lot's music into what Hold plays; nil builds its own.
	Clips *musicClips
	// sipDialog is the leg's INVITE dialog (serverDialog or clientDialog).
	Dialog sipDialog
	// Endpoint is the leg's RTP port, set up from the negotiated media.
	Endpoint *media.Endpoint
	// SDP is the session the leg's SDP came from, used again to answer
	// re-INVITEs and to re-offer.
	SDP *media.Session
	// Direction is ours, as the INVITE's offer/answer settled it.
	Direction media.Direction
	// Party names who is on the leg: the parked party or parker the lot
	// records, and the name in logs.
	Party string
	// Confirmed is true for a dialog the host placed and acknowledged; an
	// answered one is confirmed by Confirm once its ACK is in.
	Confirmed bool
	// LateOffer is the offer the host's 200 carried to an INVITE that had
	// no SDP (delayed offer, RFC 3261 §13.2.1): the ACK must answer it.
	// Hand that ACK to ReadAckAnswer before the dialog reads it. The
	// Endpoint can start without a remote address; the answer sets it.
	LateOffer *media.Offer
	// ParkedOneWay makes re-INVITEs to a leg that is not bridged be
	// answered as a parked leg (media.ParkedDirection: it sends music, and
	// expects nothing), as the park contract requires; otherwise they are
	// answered sendrecv.
	ParkedOneWay bool
	// Ports, if set, is the pool the endpoint's port came from: Close gives
	// it back.
	Ports *PortPool
	// OnClose, if set, is called once when the leg has closed: the host
	// forgets the dialog.
	OnClose func(*callLeg)
	// Logger gets the leg's diagnostics at Debug; nil is silent.
	Logger *slog.Logger
}

// newCallLeg builds a callLeg.
func newCallLeg(cfg legConfig) (*callLeg, error) {
	switch {
	case cfg.Dialog.uas == nil && cfg.Dialog.uac == nil:
		return nil, errors.New("sipadapter: legConfig.Dialog is unset")
	case cfg.Endpoint == nil:
		return nil, errors.New("sipadapter: legConfig.Endpoint is nil")
	case cfg.SDP == nil:
		return nil, errors.New("sipadapter: legConfig.SDP is nil")
	}
	l := &callLeg{
		dlg: cfg.Dialog, ep: cfg.Endpoint, sdp: cfg.SDP, party: cfg.Party,
		parkedOneW: cfg.ParkedOneWay, log: cfg.Logger, ports: cfg.Ports, onClose: cfg.OnClose,
		settled: make(chan struct{}), dir: cfg.Direction, confirmed: cfg.Confirmed,
		lateOffer: cfg.LateOffer, clips: cfg.Clips,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.clips == nil {
		l.clips = &musicClips{}
	}
	return l, nil
}

// sipDialog returns the leg's dialog.
func (l *callLeg) Dialog() sipDialog { return l.dlg }

// Endpoint returns the leg's RTP endpoint.
func (l *callLeg) Endpoint() *media.Endpoint { return l.ep }

// Party returns who is on the leg.
func (l *callLeg) Party() string { return l.party }

// Key returns the leg's dialog key (sipDialog.Key).
func (l *callLeg) Key() string { return l.dlg.Key() }

// Hold implements park.Leg: the leg's party is parked and hears music, from
// the moment its dialog is confirmed.
func (l *callLeg) Hold(_ context.Context, music park.Music) error {
	clip, err := l.clips.clip(music)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errLegGone
	}
	l.music = clip
	if l.confirmed {
		return l.playLocked()
	}
	return nil
}

func (l *callLeg) playLocked() error {
	if l.music == nil || l.playing || l.closed || l.relay != nil {
		return nil
	}
	if err := l.ep.PlayMusic(l.music.Frames(l.ep.Codec())); err != nil {
		return err
	}
	l.playing = true
	return nil
}

// ReadAckAnswer completes a late offer: ack is the ACK of the leg's INVITE,
// whose 200 carried legConfig.LateOffer, and its body is the answer. The
// endpoint gets the agreed address and codec before the dialog reads the
// ACK, so the media is ready when the host's WriteResponse returns and
// Confirm starts it. For any other leg, or the ACK of a re-INVITE, it does
// nothing.
func (l *callLeg) ReadAckAnswer(ack *sip.Request) {
	uas := l.dlg.uas
	if uas == nil || ack.CSeq() == nil || uas.InviteRequest.CSeq() == nil || ack.CSeq().SeqNo != uas.InviteRequest.CSeq().SeqNo {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	offer := l.lateOffer
	if offer == nil {
		return
	}
	l.lateOffer = nil
	n, err := offer.ParseAnswer(ack.Body())
	if err == nil {
		err = l.ep.Apply(n)
	}
	if err != nil {
		l.lateOfferErr = fmt.Errorf("sipadapter: the ACK's SDP answer: %w", err)
		return
	}
	l.dir = n.Direction
}

// LateOfferErr reports, once the ACK is in, whether a late offer failed:
// the ACK carried no usable answer, or never came. RFC 3261 §13.3.1.4 then
// wants the session ended with a BYE. It is nil for a leg whose INVITE had
// an offer.
func (l *callLeg) LateOfferErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lateOffer != nil {
		return errors.New("sipadapter: no ACK answered the offer in our 200")
	}
	return l.lateOfferErr
}

// Confirm records that the dialog is confirmed (the ACK of our 2xx is in)
// and starts the music it waits for.
func (l *callLeg) Confirm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.confirmed = true
	switch err := l.playLocked(); {
	case errors.Is(err, media.ErrBridged):
		// A retrieve won the race with the park's ACK: the endpoint is
		// bridged already, and no music is owed. Normal, not a warning.
		l.log.Debug("hold music not started: the call was retrieved at once", "party", l.party)
	case err != nil:
		l.log.Warn("hold music did not start", "party", l.party, "err", err)
	}
}

// hangingUp reports whether the leg is over or ending: its party hung up,
// or our BYE is out.
func (l *callLeg) hangingUp() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed || l.ending
}

// Hangup implements park.Leg: BYE, once, then Close. A leg whose party has
// already hung up gets no BYE.
func (l *callLeg) Hangup(ctx context.Context) error {
	if l.Closed() {
		// The party hung up (ServeBye marks the leg closed first): no BYE,
		// but return only once the leg is freed, so that a caller counting
		// what is left (Shutdown) finds nothing.
		l.Close()
		return nil
	}
	// The BYE does not wait for our re-INVITE in progress: its answer may
	// take seconds (a lost packet under load, a slow phone), and the party
	// would hear the call end that much later. Nor is that re-INVITE given
	// up: its transaction runs to its end (the party answers 487 once it
	// has the BYE, or a 200 we acknowledge), and a cancelled context would
	// also fail a TCP connection it is still opening, which sipgo shares
	// with the BYE (the loss 93750b8 reverted). The BYE only has to leave
	// after it, with the next CSeq: sending orders the two.
	l.sending.Lock()
	l.mu.Lock()
	first := !l.ending
	if first {
		l.ending, l.byeDone = true, make(chan struct{})
	}
	done := l.byeDone
	l.mu.Unlock()
	l.sending.Unlock()
	if !first {
		// Someone else's BYE is out. Its answer may be 32 s away (a
		// party gone silent), and whoever waits for it (a bridge's end,
		// with no deadline) must not hold this caller (a Shutdown with
		// one) past its own.
		select {
		case <-done:
		case <-ctx.Done():
			return nil
		}
		l.Close()
		return nil
	}
	if err := l.dlg.Bye(ctx); err != nil {
		l.log.Debug("BYE failed", "party", l.party, "err", err)
	}
	close(done)
	l.Close()
	return nil
}

// Close frees the leg without a BYE: its party hung up, or its INVITE was
// refused. The relay stops, the endpoint closes (its port back to Ports),
// OnClose runs. Idempotent.
func (l *callLeg) Close() {
	l.closeOnce.Do(func() {
		defer l.Settle()
		l.mu.Lock()
		l.closed = true
		relay := l.relay
		l.mu.Unlock()
		if relay != nil {
			relay.Close()
		}
		if l.ports != nil {
			l.ports.freeEndpoint(l.ep)
		} else {
			l.ep.Close()
		}
		l.dlg.Close()
		if l.onClose != nil {
			l.onClose(l)
		}
	})
}

// Closed reports whether the leg has closed.
func (l *callLeg) Closed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Peer returns the leg it is bridged with, or nil.
func (l *callLeg) Peer() *callLeg {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peer
}

// Parked returns the parked call the leg holds, or nil.
func (l *callLeg) Parked() *park.Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.call
}

// SetParked records the parked call the leg now holds (after Lot.Park or
// Call.Replace) and settles the leg. It reports false, recording nothing,
// if the leg has closed meanwhile.
func (l *callLeg) SetParked(c *park.Call) bool {
	l.mu.Lock()
	closed := l.closed
	if !closed {
		l.call = c
	}
	l.mu.Unlock()
	l.Settle()
	return !closed
}

// TakeParked detaches the parked call from the leg and returns it (nil if
// none): an attended transfer hands it to another leg, and this leg's BYE
// must no longer end it.
func (l *callLeg) TakeParked() *park.Call {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.call
	l.call = nil
	return c
}

// Settle releases whoever waits in WaitSettled: the leg is bridged, parked,
// or not going to be.
func (l *callLeg) Settle() { l.settleOnce.Do(func() { close(l.settled) }) }

// WaitSettled waits up to d for Settle: a REFER may arrive right after the
// answer, before the host has bridged the leg.
func (l *callLeg) WaitSettled(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-l.settled:
	case <-t.C:
	}
}

// Direction returns our direction as last negotiated.
func (l *callLeg) Direction() media.Direction {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dir
}

// bridgeLegs joins two legs into a call: their music stops, RTP is relayed
// between them (transcoded where the codecs differ), and each is the other's
// Peer, so the host passes a BYE on. A parked call a leg held is no longer
// its. If either leg has closed, nothing is bridged and errLegGone returned.
func bridgeLegs(a, b *callLeg) error {
	defer a.Settle()
	defer b.Settle()
	relay, err := media.Bridge(a.ep, b.ep)
	if err != nil {
		if a.Closed() || b.Closed() {
			return errLegGone
		}
		return err
	}
	link := func(l, peer *callLeg) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return false
		}
		l.peer, l.relay, l.call, l.music, l.playing = peer, relay, nil, nil, false
		return true
	}
	// A leg that closed before it learnt of the relay did not close it,
	// so it is closed here.
	if !link(a, b) || !link(b, a) {
		relay.Close()
		unbridge(a, b)
		return errLegGone
	}
	return nil
}

// unbridge takes two bridged legs apart: the relay stops and a BYE on one
// no longer concerns the other. Each can then be parked or bridged anew.
func unbridge(a, b *callLeg) {
	for _, l := range []*callLeg{a, b} {
		l.mu.Lock()
		relay := l.relay
		if l.peer == a || l.peer == b {
			l.peer, l.relay = nil, nil
		}
		l.mu.Unlock()
		if relay != nil {
			relay.Close()
		}
	}
}

// Reoffer sends a re-INVITE offering dir with the leg's current codec and
// address, acknowledges the answer and applies it: a leg answered one-way
// while parked gets two-way audio back once bridged (RFC 3264 §8). A leg
// hung up meanwhile still acknowledges a 2xx, but applies nothing and
// returns errLegGone.
func (l *callLeg) Reoffer(ctx context.Context, dir media.Direction) error {
	l.offering.Lock()
	defer l.offering.Unlock()
	req, offer, tx, err := l.startReoffer(ctx, dir)
	if err != nil {
		return err
	}
	defer tx.Terminate()
	res, err := finalResponse(ctx, tx)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		// The transaction layer has acknowledged it. A 487 or 481 is the
		// answer of a party that had our BYE first.
		if l.Closed() {
			return errLegGone
		}
		return &refusedError{res.StatusCode, res.Reason}
	}
	// A 2xx is acknowledged whatever happened since: unacknowledged, the
	// party would resend it for 32 s and then end a dialog that may be
	// ours still.
	if err := l.dlg.AckInvite(req, res); err != nil {
		return err
	}
	if l.Closed() {
		return errLegGone
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
	call := l.call
	l.mu.Unlock()
	if call != nil {
		call.Update() // a new CSeq and SDP version, for a node taking it over
	}
	return nil
}

// startReoffer sends the re-INVITE of Reoffer unless the leg is closed or
// ending, and returns it as sent, its offer and its transaction.
func (l *callLeg) startReoffer(ctx context.Context, dir media.Direction) (*sip.Request, *media.Offer, sip.ClientTransaction, error) {
	l.sending.Lock()
	defer l.sending.Unlock()
	l.mu.Lock()
	gone := l.closed || l.ending
	l.mu.Unlock()
	if gone {
		return nil, nil, nil, errLegGone
	}
	offer, err := l.sdp.Offer(dir, l.ep.Codec())
	if err != nil {
		return nil, nil, nil, err
	}
	req := l.dlg.NewRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.SDP())
	tx, err := l.dlg.Start(ctx, req)
	if err != nil {
		return nil, nil, nil, err
	}
	return req, offer, tx, nil
}

// ServeReInvite answers an offer inside the leg's dialog (hold, resume, a
// new address or codec) from the leg's own media: the other leg of a call is
// not asked, since the relay carries whatever each side sends.
func (l *callLeg) ServeReInvite(req *sip.Request, tx sip.ServerTransaction) {
	offer, err := media.ParseOffer(req.Body())
	if err != nil {
		code, reason := offerStatus(err, req.Body())
		Reply(l.log, req, tx, code, reason, warning(err.Error()))
		return
	}
	l.mu.Lock()
	stance := media.SendRecv
	if l.parkedOneW && l.peer == nil {
		stance = media.ParkedDirection(offer.Direction)
	}
	answer, n, err := l.sdp.Answer(offer, stance)
	if err == nil {
		l.dir = n.Direction
	}
	l.mu.Unlock()
	if err != nil {
		Reply(l.log, req, tx, sip.StatusNotAcceptableHere, "Not Acceptable Here", warning(err.Error()))
		return
	}
	if err := l.ep.Apply(n); err != nil {
		l.log.Warn("codec change refused", "party", l.party, "err", err)
	}
	respond(l.log, tx, sip.NewSDPResponseFromRequest(req, answer))
	if call := l.Parked(); call != nil {
		call.Update() // our SDP version moved on
	}
}

// ServeBye answers the party's BYE and closes the leg. A call it held in
// the lot is abandoned (returned, so the host can log it); the peer it was
// bridged with is returned for the host to hang up.
func (l *callLeg) ServeBye(req *sip.Request, tx sip.ServerTransaction) (abandoned *park.Call, peer *callLeg) {
	// Marked closed in the same step as the peer is read: a bridgeLegs running
	// now either linked this leg already (its peer is seen here and gets
	// the BYE) or will find it closed and give up (its caller hangs up the
	// other leg). Reading first and closing later left a window in which a
	// retrieve bridged the parked party to a leg already gone.
	l.mu.Lock()
	l.closed = true
	call, peer := l.call, l.peer
	l.mu.Unlock()
	if call != nil && !call.Abandon() {
		call = nil
	}
	// The 200 goes out only once the lot has the call as abandoned: a
	// phone (or a test) that moves on at the 200 finds the lot settled,
	// and a Shutdown starting then cannot recall the call and send a BYE
	// to a party that has just said goodbye.
	if err := l.dlg.ReadBye(req, tx); err != nil {
		l.log.Debug("BYE answer failed", "party", l.party, "err", err)
	}
	l.Close()
	return call, peer
}

// confirmAnswer turns an INVITE the host placed, answered 2xx (sess after
// waitAnswer), into a Leg: the SDP answer to offer is applied to
// cfg.Endpoint, file builds and files the leg (the host's map, with its
// OnClose), then the 2xx is acknowledged. All of it before the ACK goes
// out, because the far end may hang up the moment it has the ACK: its BYE
// must find the dialog, and closes the endpoint (an answer applied after
// it failed, and a recall answered and hung up at once counted as not
// answered). On failure the leg is freed, hung up if it was acknowledged.
// A leg that comes back may already be closed by such a BYE.
func confirmAnswer(ctx context.Context, sess *sipgo.DialogClientSession, offer *media.Offer, cfg legConfig, file func(legConfig) *callLeg) (*callLeg, error) {
	n, err := offer.ParseAnswer(sess.InviteResponse.Body())
	if err == nil {
		// Before the ACK: once it is out the party may hang up at once, and
		// its BYE closes the leg and its endpoint.
		err = cfg.Endpoint.Apply(n)
	}
	cfg.Dialog, cfg.Direction, cfg.Confirmed = clientDialog(sess), n.Direction, true
	l := file(cfg)
	if ackErr := sess.Ack(context.WithoutCancel(ctx)); ackErr != nil {
		l.Close()
		return nil, ackErr
	}
	if err != nil {
		l.Hangup(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("answer SDP: %w", err)
	}
	return l, nil
}
