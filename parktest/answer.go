package parktest

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// Answering a call: the answer policy, the 200 and waiting for its ACK.

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
	p.inbox.addInvite()
	p.mu.Lock()
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
			p.inbox.addCancel()
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
		SRTPKey:        media.NewSRTPKey(), // used if the caller offers SRTP
	}
	c := &Call{
		phone: p, dlg: d, setup: req.CloneHeaders(), done: make(chan struct{}),
		local: local, acks: make(map[uint32]*sip.Request),
	}
	epOpts := media.EndpointOptions{Codec: p.codecs[0], Scheduler: p.sched, Logger: p.log}
	if policy.KeepAudio {
		c.heard = &audioLog{}
		epOpts.OnAudio = c.heard.add
	}
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
		epOpts.SRTP = neg.SRTP
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
