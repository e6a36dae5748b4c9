package parktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// CallOptions tunes one outgoing call. The zero value is a plain call that
// sends audio.
type CallOptions struct {
	// Headers are added to the INVITE: Referred-By for a directed park,
	// Replaces to take a call over, anything a test wants the server to see.
	Headers []sip.Header
	// Codecs override the phone's for this call's offer.
	Codecs []media.Codec
	// Mute keeps the call silent until StartAudio; by default it sends a
	// 440 Hz tone from the answer on, so that the far end has audio to
	// relay.
	Mute bool
	// LateOffer sends the INVITE without SDP, as some PBXs do: the callee
	// offers in its 200 OK and the phone answers in the ACK.
	LateOffer bool
}

// Call is one established call of a phone, outgoing or incoming: its dialog,
// its RTP port and what was negotiated. A Call is safe for concurrent use.
type Call struct {
	phone    *Phone
	dlg      *dialog
	outgoing bool
	setup    []sip.Header // headers of the 200 OK (outgoing) or the INVITE (incoming)
	ep       *media.Endpoint
	done     chan struct{}
	reinvite sync.Mutex // our re-INVITEs go one at a time

	mu            sync.Mutex
	local         media.LocalMedia
	lastSDP       []byte       // the last SDP body we sent
	offer         *media.Offer // our last offer, to check its answer
	neg           media.Negotiated
	remote        *media.RemoteMedia
	ended         bool
	endedByRemote bool
	reinviting    bool                    // our re-INVITE is in progress (glare, RFC 3261 §14.2)
	acks          map[uint32]*sip.Request // ACKs of our INVITEs by CSeq, resent on a stray 2xx
	pendingAck    *ackWait                // our 2xx waiting for its ACK
	refers        []*referWaiter
}

// ackWait is a 2xx of ours to an INVITE waiting for its ACK.
type ackWait struct {
	seq  uint32
	done chan struct{} // closed when the ACK arrives
	req  *sip.Request  // the ACK, set before done is closed; nil when a later INVITE implied it
}

// Call sends an INVITE to target (a sip: URI; URI headers such as
// ?Replaces=... become request headers) and returns on its final response:
// the established Call on a 2xx, which it has acknowledged, or a *StatusError
// on any other final status. When ctx ends first the INVITE is cancelled and
// ctx's error returned.
func (p *Phone) Call(ctx context.Context, target string, opts CallOptions) (*Call, error) {
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	u, uriHeaders, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	codecs := p.codecs
	if len(opts.Codecs) > 0 {
		for _, c := range opts.Codecs {
			if !c.Valid() {
				return nil, fmt.Errorf("%w: CallOptions.Codecs holds %v, want PCMU or PCMA", ErrInvalidOptions, c)
			}
		}
		codecs = opts.Codecs
	}
	conn, err := listenRTP()
	if err != nil {
		return nil, err
	}
	local := media.LocalMedia{
		Addr:           conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		Username:       p.user,
		SessionID:      1 + rand.Uint64N(1<<62),
		SessionVersion: 1,
		Codecs:         codecs,
	}
	offer, err := media.NewOffer(local, media.SendRecv)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("parktest: SDP offer: %w", err)
	}
	d := p.newUACDialog(u)
	// newInvite builds the INVITE, again with the next CSeq and auth (the
	// credentials) when the first one is challenged.
	newInvite := func(auth sip.Header) *sip.Request {
		req := d.newRequest(sip.INVITE)
		for _, h := range uriHeaders {
			req.AppendHeader(sip.HeaderClone(h))
		}
		for _, h := range opts.Headers {
			req.AppendHeader(sip.HeaderClone(h))
		}
		if auth != nil {
			req.AppendHeader(sip.HeaderClone(auth))
		}
		if !opts.LateOffer {
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			req.SetBody(offer.SDP())
		}
		return req
	}
	req := newInvite(nil)
	res, err := p.invite(ctx, req, d)
	var auth sip.Header
	for retry := 0; err != nil && p.password != "" && retry < maxAuthRetries; retry++ {
		// A PBX challenges the INVITE (407, or 401); the transaction has
		// acknowledged that. Same Call-ID and From tag, next CSeq (RFC 3261
		// §22.2), a second answer only to a stale nonce.
		var se *StatusError
		if !errors.As(err, &se) || !isChallenge(se.Response) || (retry > 0 && !staleChallenge(se.Response)) {
			break
		}
		if auth, err = p.authorization(req, se.Response); err != nil {
			break
		}
		req = newInvite(auth)
		res, err = p.invite(ctx, req, d)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	seq := req.CSeq().SeqNo
	d.establish(res)
	ack := d.ack(seq)
	if auth != nil {
		// §13.2.2.4: the ACK carries the INVITE's credentials.
		ack.AppendHeader(sip.HeaderClone(auth))
	}
	// fail acknowledges a 2xx the phone does not want, then leaves the
	// dialog (RFC 3261 §15).
	fail := func(err error) (*Call, error) {
		_ = conn.Close()
		p.sendAck(ack)
		p.byeBestEffort(d)
		return nil, err
	}
	var (
		neg     media.Negotiated
		remote  *media.RemoteMedia
		lastSDP = offer.SDP()
	)
	if opts.LateOffer {
		if remote, err = media.ParseOffer(res.Body()); err == nil {
			lastSDP, neg, err = media.Answer(remote, local, media.SendRecv)
		}
		if err == nil {
			ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			ack.SetBody(lastSDP)
		}
	} else if neg, err = offer.ParseAnswer(res.Body()); err == nil {
		remote, _ = media.ParseOffer(res.Body()) // ParseAnswer parsed it already
	}
	if err != nil {
		return fail(fmt.Errorf("%w: 200 OK to INVITE %s: %w", ErrBadSDP, target, err))
	}
	ep, err := media.NewEndpoint(conn, media.EndpointOptions{
		Remote: neg.Remote, Codec: neg.Codec, PayloadType: neg.PayloadType,
		TelephoneEvent: neg.TelephoneEvent, Scheduler: p.sched, Logger: p.log,
	})
	if err != nil {
		return fail(fmt.Errorf("%w: 200 OK to INVITE %s: %w", ErrBadSDP, target, err))
	}
	c := &Call{
		phone: p, dlg: d, outgoing: true, setup: res.CloneHeaders(), ep: ep,
		done: make(chan struct{}), local: local, lastSDP: lastSDP, offer: offer,
		neg: neg, remote: remote, acks: map[uint32]*sip.Request{seq: ack},
	}
	// Registered before the ACK goes: the callee may hang up right after it.
	if !p.register(c) {
		_ = ep.Close()
		p.sendAck(ack)
		return nil, ErrPhoneClosed
	}
	p.sendAck(ack)
	c.applyNegotiated(neg, remote)
	if !opts.Mute {
		if err := c.StartAudio(); err != nil {
			p.log.Debug("parktest: start audio", "error", err)
		}
	}
	return c, nil
}

// listenRTP opens a call's RTP socket on a free loopback port.
func listenRTP() (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)))
	if err != nil {
		return nil, fmt.Errorf("parktest: RTP socket: %w", err)
	}
	return conn, nil
}

// invite sends an initial INVITE and waits for its final response: a 2xx
// with a nil error, any other status as a *StatusError. When ctx ends first
// it returns ctx's error at once and leaves the INVITE to abandonInvite.
func (p *Phone) invite(ctx context.Context, req *sip.Request, d *dialog) (*sip.Response, error) {
	target := req.Recipient.String()
	tx, err := p.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: INVITE %s: %v", ErrTransaction, target, err)
	}
	provisional := false
	for {
		select {
		case res := <-tx.Responses():
			switch {
			case res.IsProvisional():
				provisional = true
				continue
			case res.IsSuccess():
				tx.Terminate()
				return res, nil
			default:
				// The transaction acknowledges it, and again if it is
				// retransmitted, until Timer D ends it.
				return nil, statusError(req, res)
			}
		case <-tx.Done():
			return nil, txError(sip.INVITE, target, tx.Err())
		case <-ctx.Done():
			p.wg.Add(1) // inside the caller's enter, so Close waits for it
			go func() {
				defer p.wg.Done()
				p.abandonInvite(tx, req, d, provisional)
			}()
			return nil, ctx.Err()
		case <-p.closing:
			tx.Terminate()
			return nil, ErrPhoneClosed
		}
	}
}

// abandonInvite cancels an INVITE the caller gave up on (RFC 3261 §9.1: not
// before a provisional response, which could be overtaken) and waits for its
// final response: 487, or a 2xx that crossed the CANCEL, which it
// acknowledges and ends with a BYE (§15). Only Close cuts it short.
func (p *Phone) abandonInvite(tx sip.ClientTransaction, req *sip.Request, d *dialog, provisional bool) {
	defer tx.Terminate()
	final := func(res *sip.Response) {
		if res.IsSuccess() {
			d.establish(res)
			p.sendAck(d.ack(req.CSeq().SeqNo))
			p.byeBestEffort(d)
		}
	}
	for !provisional {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				final(res)
				return
			}
			provisional = true
		case <-tx.Done():
			return
		case <-p.closing:
			return
		}
	}
	if _, err := p.do(context.Background(), newCancel(req)); err != nil {
		p.log.Debug("parktest: CANCEL failed", "target", req.Recipient.String(), "error", err)
	}
	for {
		select {
		case res := <-tx.Responses():
			if !res.IsProvisional() {
				final(res)
				return
			}
		case <-tx.Done():
			return
		case <-p.closing:
			return
		}
	}
}

// newCancel builds the CANCEL of an INVITE (RFC 3261 §9.1): same
// Request-URI, top Via, From, To, Call-ID, Route and CSeq number.
func newCancel(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	maxForwards := sip.MaxForwardsHeader(70)
	c.AppendHeader(&maxForwards)
	sip.CopyHeaders("Route", inv, c)
	c.SetTransport(inv.Transport())
	c.SetBody(nil)
	return c
}

// sendAck sends a copy of ack (each copy gets its own Via when sent).
func (p *Phone) sendAck(ack *sip.Request) {
	if err := p.client.WriteRequest(ack.Clone()); err != nil {
		p.log.Debug("parktest: ACK failed", "target", ack.Recipient.String(), "error", err)
	}
}

// byeBestEffort ends a dialog the phone does not want (answered too late,
// unusable SDP) without waiting long for the answer.
func (p *Phone) byeBestEffort(d *dialog) {
	ctx, cancel := context.WithTimeout(context.Background(), closeHangupBudget)
	defer cancel()
	if _, err := p.do(ctx, d.newRequest(sip.BYE)); err != nil {
		p.log.Debug("parktest: BYE failed", "call-id", d.callID, "error", err)
	}
}

// register makes c reachable by the peer's in-dialog requests; it reports
// false once the phone is closing.
func (p *Phone) register(c *Call) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.calls[c.dlg.key()] = c
	return true
}

func (p *Phone) unregister(c *Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls[c.dlg.key()] == c {
		delete(p.calls, c.dlg.key())
	}
}

// dialogIDs returns a request's Call-ID and its To tag and From tag, which are
// our tag and the peer's for a request inside one of our dialogs.
func dialogIDs(req *sip.Request) (callID, localTag, remoteTag string, ok bool) {
	if req.CallID() == nil || req.To() == nil || req.From() == nil {
		return "", "", "", false
	}
	localTag, _ = req.To().Params.Get("tag")
	remoteTag, _ = req.From().Params.Get("tag")
	return req.CallID().Value(), localTag, remoteTag, true
}

// lookupCall finds the call an in-dialog request belongs to.
func (p *Phone) lookupCall(req *sip.Request) *Call {
	callID, localTag, remoteTag, ok := dialogIDs(req)
	if !ok || localTag == "" {
		return nil
	}
	p.mu.Lock()
	c := p.calls[dialogKey(callID, localTag)]
	p.mu.Unlock()
	if c == nil {
		return nil
	}
	if tag := c.dlg.peerTag(); tag != "" && tag != remoteTag {
		return nil
	}
	return c
}

// dialogResponse builds a response inside dialog d: our tag in To, our
// Contact on 1xx and 2xx.
func dialogResponse(req *sip.Request, d *dialog, code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	res.To().Params.Add("tag", d.localTag)
	if code > 100 && code < 300 {
		res.AppendHeader(d.contact.Clone())
	}
	return res
}

// reasonPhrase returns RFC 3261's reason phrase for the codes a test phone
// rejects with, "Rejected" for others.
func reasonPhrase(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	return "Rejected"
}

// sdpStatus maps an SDP error of the media package to the response the
// contract gives it: 400 for unparsable SDP, 488 for no usable audio.
func sdpStatus(err error) int {
	if errors.Is(err, media.ErrBadSDP) {
		return sip.StatusBadRequest
	}
	return sip.StatusNotAcceptableHere
}

func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To() != nil && req.To().Params.Has("tag") {
		c := p.lookupCall(req)
		if c == nil {
			p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
			return
		}
		c.onReinvite(req, tx)
		return
	}
	p.mu.Lock()
	p.invites++
	p.bumpLocked()
	policy := p.answer
	p.mu.Unlock()
	p.answerIncoming(req, tx, policy)
}

// answerIncoming plays the callee: 180 Ringing, then what policy says.
func (p *Phone) answerIncoming(req *sip.Request, tx sip.ServerTransaction, policy AnswerPolicy) {
	if req.Contact() == nil || req.From() == nil || req.CallID() == nil {
		p.respond(tx, req, sip.StatusBadRequest, "Bad Request", nil, sip.NewHeader("Warning", `399 parktest "INVITE without Contact, From or Call-ID"`))
		return
	}
	var offer *media.RemoteMedia
	if len(req.Body()) > 0 {
		var err error
		if offer, err = media.ParseOffer(req.Body()); err != nil {
			code := sdpStatus(err)
			p.respond(tx, req, code, reasonPhrase(code), nil)
			return
		}
	}
	cancelled := make(chan struct{})
	var cancelOnce sync.Once
	countCancel := func() {
		cancelOnce.Do(func() {
			p.mu.Lock()
			p.cancels++
			p.bumpLocked()
			p.mu.Unlock()
			close(cancelled)
		})
	}
	if !tx.OnCancel(func(*sip.Request) { countCancel() }) {
		// The CANCEL beat us to it: sipgo already answered 487.
		if errors.Is(tx.Err(), sip.ErrTransactionCanceled) {
			countCancel()
		}
		return
	}
	d := p.newUASDialog(req)
	ringing := dialogResponse(req, d, sip.StatusRinging, "Ringing", nil)
	if err := tx.Respond(ringing); err != nil {
		p.log.Debug("parktest: 180 failed", "error", err)
	}
	closing := func() bool {
		select {
		case <-p.closing:
			return true
		default:
			return false
		}
	}
	unavailable := func() {
		if closing() {
			p.respond(tx, req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		}
	}
	switch policy.Mode {
	case NoAnswer:
		select {
		case <-cancelled:
		case <-p.closing:
			unavailable()
		}
		return
	case Reject:
		if sleepUnless(policy.Delay, cancelled, p.closing) {
			res := dialogResponse(req, d, policy.Code, reasonPhrase(policy.Code), nil)
			for _, h := range policy.Headers {
				res.AppendHeader(sip.HeaderClone(h))
			}
			if err := tx.Respond(res); err != nil {
				p.log.Debug("parktest: reject failed", "error", err)
			}
		} else {
			unavailable()
		}
		return
	}
	if !sleepUnless(policy.Delay, cancelled, p.closing) {
		unavailable()
		return
	}
	p.accept(req, tx, d, offer, policy, cancelled)
}

// accept answers an incoming INVITE 200 OK with an SDP answer (or, for an
// INVITE without SDP, an offer whose answer comes in the ACK), resends the
// 200 until the ACK arrives and hands the call to Incoming.
func (p *Phone) accept(req *sip.Request, tx sip.ServerTransaction, d *dialog, offer *media.RemoteMedia, policy AnswerPolicy, cancelled <-chan struct{}) {
	conn, err := listenRTP()
	if err != nil {
		p.log.Warn("parktest: answer", "error", err)
		p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	local := media.LocalMedia{
		Addr:           conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		Username:       p.user,
		SessionID:      1 + rand.Uint64N(1<<62),
		SessionVersion: 1,
		Codecs:         p.codecs,
	}
	c := &Call{
		phone: p, dlg: d, setup: req.CloneHeaders(), done: make(chan struct{}),
		local: local, acks: make(map[uint32]*sip.Request),
	}
	epOpts := media.EndpointOptions{Codec: p.codecs[0], Scheduler: p.sched, Logger: p.log}
	var body []byte
	if offer != nil {
		answer, neg, err := media.Answer(offer, local, media.SendRecv)
		if err != nil {
			_ = conn.Close()
			code := sdpStatus(err)
			p.respond(tx, req, code, reasonPhrase(code), nil)
			return
		}
		body, c.neg, c.remote = answer, neg, offer
		epOpts.Remote, epOpts.Codec, epOpts.PayloadType, epOpts.TelephoneEvent = neg.Remote, neg.Codec, neg.PayloadType, neg.TelephoneEvent
	} else {
		o, err := media.NewOffer(local, media.SendRecv)
		if err != nil {
			_ = conn.Close()
			p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
			return
		}
		body, c.offer = o.SDP(), o
	}
	c.lastSDP = body
	c.ep, err = media.NewEndpoint(conn, epOpts)
	if err != nil {
		_ = conn.Close()
		p.log.Warn("parktest: answer", "error", err)
		p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	wait := c.expectAck(req.CSeq().SeqNo)
	if !p.register(c) {
		c.end(false)
		p.respond(tx, req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		return
	}
	if offer != nil {
		c.applyNegotiated(c.Negotiated(), offer)
	}
	ok := dialogResponse(req, d, sip.StatusOK, "OK", body)
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	for _, h := range policy.Headers {
		ok.AppendHeader(sip.HeaderClone(h))
	}
	err = tx.Respond(ok)
	select {
	case <-cancelled:
		err = errors.Join(err, sip.ErrTransactionCanceled)
	default:
	}
	if err != nil {
		p.log.Debug("parktest: 200 OK failed", "error", err)
		c.end(false)
		return
	}
	if offer != nil && !policy.Mute {
		_ = c.StartAudio()
	}
	if !c.awaitAck(wait, tx, ok) {
		return
	}
	if offer == nil && !c.isEnded() {
		if wait.req == nil {
			// A re-INVITE implied the ACK: its offer/answer superseded ours.
		} else if err := c.applyAnswer(c.offer, wait.req.Body()); err != nil {
			p.log.Debug("parktest: SDP answer in ACK", "error", err)
			c.hangupBestEffort()
			return
		}
		if !policy.Mute {
			_ = c.StartAudio()
		}
	}
	select {
	case p.incoming <- c:
	default:
		p.log.Warn("parktest: Incoming is full, call not delivered", "call-id", d.callID)
	}
}

// expectAck records that the 2xx to the peer's INVITE numbered seq is about
// to go out and waits for its ACK.
func (c *Call) expectAck(seq uint32) *ackWait {
	w := &ackWait{seq: seq, done: make(chan struct{})}
	c.mu.Lock()
	c.pendingAck = w
	c.mu.Unlock()
	return w
}

// awaitAck resends ok until w's ACK arrives (RFC 3261 §13.3.1.4); with no
// ACK after 64×T1 the call is hung up. It reports whether the call was
// answered: the ACK came, or the peer hung up first. A peer's BYE proves
// it had the 200 (it has the To tag), and the ACK and the BYE are handled
// concurrently, so a peer that ACKs and hangs up at once (a server shutting
// down right after a recall is answered) may have its BYE seen first.
func (c *Call) awaitAck(w *ackWait, tx sip.ServerTransaction, ok *sip.Response) bool {
	p := c.phone
	tm := retransmitTimers{T1: sip.T1, T2: sip.T2, GiveUp: 64 * sip.T1}
	acked := retransmitUntil(w.done, c.done, sip.IsReliable(p.transport), tm, func() {
		if err := tx.Respond(ok); err != nil {
			p.log.Debug("parktest: 2xx retransmission failed", "error", err)
		}
	})
	if acked {
		return true
	}
	c.mu.Lock()
	if c.pendingAck == w {
		c.pendingAck = nil
	}
	byPeer := c.ended && c.endedByRemote
	c.mu.Unlock()
	if byPeer {
		return true
	}
	c.hangupBestEffort()
	return false
}

func (p *Phone) onAck(req *sip.Request, _ sip.ServerTransaction) {
	if c := p.lookupCall(req); c != nil && req.CSeq() != nil {
		c.mu.Lock()
		if w := c.pendingAck; w != nil && w.seq == req.CSeq().SeqNo {
			w.req = req
			c.pendingAck = nil
			close(w.done)
		}
		c.mu.Unlock()
	}
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	c := p.lookupCall(req)
	if c == nil {
		p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
		return
	}
	if req.CSeq() == nil || !c.dlg.acceptRemoteSeq(req.CSeq().SeqNo) {
		p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	p.respond(tx, req, sip.StatusOK, "OK", nil)
	c.end(true)
}

// onReinvite answers a re-INVITE from the peer with our SDP (a new o=
// version only when it changed) and applies the new direction: a peer that
// holds us (sendonly) gets recvonly and no more audio until it resumes.
func (c *Call) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	p := c.phone
	if req.CSeq() == nil || !c.dlg.acceptRemoteSeq(req.CSeq().SeqNo) {
		p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	c.mu.Lock()
	ended, glare := c.ended, c.reinviting
	if w := c.pendingAck; w != nil && w.seq < req.CSeq().SeqNo {
		// Our 2xx to the previous INVITE is out: the peer may send the next
		// one before its ACK reaches us (sipgo hands each message to its own
		// goroutine, so they can even be processed out of order). A later
		// INVITE implies the ACK.
		c.pendingAck = nil
		close(w.done)
	}
	c.mu.Unlock()
	switch {
	case ended:
		p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
		return
	case glare:
		p.respond(tx, req, sip.StatusRequestPending, "Request Pending", nil)
		return
	}
	var (
		body   []byte
		neg    media.Negotiated
		remote *media.RemoteMedia
		offer  *media.Offer
		err    error
	)
	if len(req.Body()) > 0 {
		if remote, err = media.ParseOffer(req.Body()); err == nil {
			c.mu.Lock()
			body, neg, err = c.answerLocked(remote)
			c.mu.Unlock()
		}
		if err != nil {
			code := sdpStatus(err)
			p.respond(tx, req, code, reasonPhrase(code), nil)
			return
		}
	} else {
		c.mu.Lock()
		offer, err = c.offerLocked(media.SendRecv)
		if err == nil {
			body = offer.SDP()
		}
		c.mu.Unlock()
		if err != nil {
			p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
			return
		}
	}
	c.dlg.updateTarget(req.Contact())
	// Applied before the 200 goes out: once the peer has it, it may look.
	if remote != nil {
		c.applyNegotiated(neg, remote)
	}
	wait := c.expectAck(req.CSeq().SeqNo)
	ok := dialogResponse(req, c.dlg, sip.StatusOK, "OK", body)
	ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	if err := tx.Respond(ok); err != nil {
		p.log.Debug("parktest: 200 to re-INVITE failed", "error", err)
	}
	if !c.awaitAck(wait, tx, ok) {
		return
	}
	if offer != nil && wait.req != nil {
		if err := c.applyAnswer(offer, wait.req.Body()); err != nil {
			p.log.Debug("parktest: SDP answer in ACK", "error", err)
		}
	}
}

// answerLocked builds our answer to a peer's offer, raising the o= version
// only if the body differs from the last one we sent (RFC 3264 §8).
func (c *Call) answerLocked(offer *media.RemoteMedia) ([]byte, media.Negotiated, error) {
	body, neg, err := media.Answer(offer, c.local, media.SendRecv)
	if err != nil {
		return nil, neg, err
	}
	if !bytes.Equal(body, c.lastSDP) {
		c.local.SessionVersion++
		if body, neg, err = media.Answer(offer, c.local, media.SendRecv); err != nil {
			return nil, neg, err
		}
	}
	c.lastSDP = body
	return body, neg, nil
}

// offerLocked builds our next offer with direction dir, raising the o=
// version only if the body changed.
func (c *Call) offerLocked(dir media.Direction) (*media.Offer, error) {
	o, err := media.NewOffer(c.local, dir)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(o.SDP(), c.lastSDP) {
		c.local.SessionVersion++
		if o, err = media.NewOffer(c.local, dir); err != nil {
			return nil, err
		}
	}
	c.lastSDP, c.offer = o.SDP(), o
	return o, nil
}

// applyAnswer applies the peer's answer to our offer.
func (c *Call) applyAnswer(offer *media.Offer, body []byte) error {
	neg, err := offer.ParseAnswer(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	remote, _ := media.ParseOffer(body) // ParseAnswer parsed it already
	c.applyNegotiated(neg, remote)
	return nil
}

// applyNegotiated points the RTP endpoint at what the last offer/answer
// agreed: codec, remote address, and whether we may send at all.
func (c *Call) applyNegotiated(neg media.Negotiated, remote *media.RemoteMedia) {
	c.mu.Lock()
	c.neg, c.remote = neg, remote
	c.mu.Unlock()
	if err := c.ep.SetCodec(neg.Codec, neg.PayloadType, neg.TelephoneEvent); err != nil {
		c.phone.log.Debug("parktest: set codec", "error", err)
	}
	if neg.Remote.IsValid() && neg.Remote.Port() != 0 && !neg.Remote.Addr().IsUnspecified() {
		c.ep.SetRemote(neg.Remote)
	}
	if neg.Direction.Sends() {
		c.ep.Unhold()
	} else {
		c.ep.Hold()
	}
}

// Hold puts the call on hold with a re-INVITE offering a=sendonly; the
// peer's answer (recvonly from an RFC 3264 peer, inactive from one that holds
// too) shows in RemoteSDP and Negotiated. Non-2xx answers come back as
// *StatusError and leave the call as it was.
func (c *Call) Hold(ctx context.Context) error { return c.offerDirection(ctx, media.SendOnly) }

// Resume takes the call off hold with a re-INVITE offering a=sendrecv.
func (c *Call) Resume(ctx context.Context) error { return c.offerDirection(ctx, media.SendRecv) }

func (c *Call) offerDirection(ctx context.Context, dir media.Direction) error {
	p := c.phone
	if !p.enter() {
		return ErrPhoneClosed
	}
	defer p.leave()
	c.reinvite.Lock()
	defer c.reinvite.Unlock()
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return ErrCallEnded
	}
	c.reinviting = true
	saved := c.local
	offer, err := c.offerLocked(dir)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviting = false
		c.mu.Unlock()
	}()
	if err != nil {
		return fmt.Errorf("parktest: SDP offer: %w", err)
	}
	req := c.dlg.newRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.SDP())
	seq := req.CSeq().SeqNo
	res, err := p.do(ctx, req)
	if err == nil && !res.IsSuccess() {
		err = statusError(req, res)
	}
	if err != nil {
		// The offer did not take: the next one starts from the old SDP.
		c.mu.Lock()
		c.local, c.lastSDP = saved, nil
		c.mu.Unlock()
		return err
	}
	ack := c.dlg.ack(seq)
	c.mu.Lock()
	c.acks[seq] = ack
	c.mu.Unlock()
	p.sendAck(ack)
	c.dlg.updateTarget(res.Contact())
	return c.applyAnswer(offer, res.Body())
}

// resendAck answers a retransmitted 2xx to our INVITE numbered seq.
func (c *Call) resendAck(seq uint32) {
	c.mu.Lock()
	ack := c.acks[seq]
	c.mu.Unlock()
	if ack != nil {
		c.phone.sendAck(ack)
	}
}

// Hangup ends the call with a BYE. The call ends whatever the answer; a
// non-2xx answer (481 when the peer had already hung up) comes back as
// *StatusError. Hanging up an ended call does nothing and returns nil.
func (c *Call) Hangup(ctx context.Context) error {
	if c.isEnded() {
		return nil
	}
	p := c.phone
	if !p.enter() {
		return ErrPhoneClosed
	}
	defer p.leave()
	return c.hangup(ctx)
}

func (c *Call) hangup(ctx context.Context) error {
	if c.isEnded() {
		return nil
	}
	req := c.dlg.newRequest(sip.BYE)
	res, err := c.phone.do(ctx, req)
	c.end(false)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return statusError(req, res)
	}
	return nil
}

// hangupBestEffort hangs up without waiting long: the call went wrong (no
// ACK, a bad SDP in the ACK).
func (c *Call) hangupBestEffort() {
	ctx, cancel := context.WithTimeout(context.Background(), closeHangupBudget)
	defer cancel()
	if err := c.hangup(ctx); err != nil {
		c.phone.log.Debug("parktest: BYE failed", "call-id", c.dlg.callID, "error", err)
	}
}

// end closes the call's media and marks it ended, once. The dialog stays
// reachable while a REFER of ours still waits for its NOTIFYs.
func (c *Call) end(byRemote bool) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended, c.endedByRemote = true, byRemote
	keep := len(c.refers) > 0
	c.mu.Unlock()
	if c.ep != nil {
		_ = c.ep.Close()
	}
	close(c.done)
	if !keep {
		c.phone.unregister(c)
	}
}

func (c *Call) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// Done is closed when the call has ended, by a BYE either way.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndedByRemote reports whether the call ended with a BYE from the peer.
func (c *Call) EndedByRemote() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endedByRemote
}

// Outgoing reports whether the phone placed the call (Phone.Call) rather
// than answered it.
func (c *Call) Outgoing() bool { return c.outgoing }

// Header returns the first value of the named header (case-insensitive,
// compact forms too) of the message that set the call up: the 200 OK for an
// outgoing call, the INVITE for an incoming one. Empty if absent.
func (c *Call) Header(name string) string { return headerValue(c.setup, name) }

// Orbit returns the X-Park-Orbit header of the 200 OK that parked the call:
// the orbit a park server put it in.
func (c *Call) Orbit() string { return c.Header("X-Park-Orbit") }

// compactForms maps the long header names that have a compact form (RFC
// 3261 §7.3.3, RFC 3515, RFC 3892, RFC 6665) to it.
var compactForms = map[string]string{
	"call-id": "i", "contact": "m", "content-encoding": "e", "content-length": "l",
	"content-type": "c", "from": "f", "subject": "s", "supported": "k", "to": "t",
	"via": "v", "refer-to": "r", "referred-by": "b", "event": "o", "allow-events": "u",
}

// headerValue finds the first header named name (or its compact form) in hs.
func headerValue(hs []sip.Header, name string) string {
	compact := compactForms[strings.ToLower(name)]
	for _, h := range hs {
		if strings.EqualFold(h.Name(), name) || (compact != "" && strings.EqualFold(h.Name(), compact)) {
			return h.Value()
		}
	}
	return ""
}

// CallID returns the call's Call-ID.
func (c *Call) CallID() string { return c.dlg.callID }

// RemoteSDP returns the peer's last session description (its offer or its
// answer), nil while none has arrived (an INVITE without SDP before the ACK).
func (c *Call) RemoteSDP() *media.RemoteMedia {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote
}

// Negotiated returns what the last offer/answer agreed; its Direction is
// ours (SendOnly while we hold the peer, RecvOnly while it holds us).
func (c *Call) Negotiated() media.Negotiated {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.neg
}

// Received returns the number of RTP packets of the negotiated payload types
// received on the call's port.
func (c *Call) Received() uint64 { return c.ep.Stats().Received }

// RTPStats returns all the counters of the call's RTP port.
func (c *Call) RTPStats() media.EndpointStats { return c.ep.Stats() }

// LocalRTP returns the address of the call's RTP port.
func (c *Call) LocalRTP() netip.AddrPort { return c.ep.LocalAddr() }

// WaitReceived waits until at least n RTP packets have been received. It
// returns ErrCallEnded if the call ends first.
func (c *Call) WaitReceived(ctx context.Context, n uint64) error {
	ended := false
	err := pollUntil(ctx, c.phone.closing, pollInterval, func() bool {
		if c.ep.Stats().Received >= n {
			return true
		}
		select {
		case <-c.done:
			ended = true
			return true
		default:
			return false
		}
	})
	if err == nil && ended {
		return fmt.Errorf("%w: %d of %d RTP packets received", ErrCallEnded, c.ep.Stats().Received, n)
	}
	return err
}

// StartAudio sends a 440 Hz tone to the peer as paced RTP in the negotiated
// codec (paused while the negotiated direction forbids sending). Calls send it
// from the start unless muted; calling it again changes nothing.
func (c *Call) StartAudio() error {
	if err := c.ep.PlayMusic(c.phone.tone.Frames(c.ep.Codec())); err != nil {
		if errors.Is(err, media.ErrClosed) {
			return ErrCallEnded
		}
		return err
	}
	return nil
}

// StopAudio stops sending audio.
func (c *Call) StopAudio() { c.ep.StopMusic() }

// Send sends a request a test built by hand inside the call's dialog: each
// dialog header it lacks (From, To, Call-ID, CSeq, Max-Forwards, Route,
// Contact; the Request-URI if it has no host) is filled in, the others are
// left as they are, so that odd requests (a REFER without Refer-To) can be
// sent. It returns the final response whatever its status; the 2xx of an
// INVITE sent this way is not acknowledged (use Hold and Resume).
func (c *Call) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.IsAck() || req.IsCancel() {
		return nil, fmt.Errorf("%w: Send: method %s has no response to wait for", ErrInvalidOptions, req.Method)
	}
	if c.isEnded() {
		return nil, ErrCallEnded
	}
	p := c.phone
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	c.dlg.fill(req)
	return p.do(ctx, req)
}

// ReplacingURI returns target with a Replaces URI header (RFC 3891) naming
// this call's dialog: the Refer-To of an attended transfer, so that whoever
// calls it takes this call's place (SIP-CONTRACT flow 5b: park by attended
// transfer). Pass it to another call's Refer.
func (c *Call) ReplacingURI(target string) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + "Replaces=" + escapeURIHeaderValue(c.dlg.replaces())
}
