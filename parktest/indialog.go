package parktest

import (
	"bytes"
	"fmt"
	"time"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// Inside a call: BYE and re-INVITEs either way, holds, the end of a call.

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
	if !c.delayReinviteAnswer() {
		// RFC 3261 §15.1.2: the BYE ended the session, and a request still
		// pending in it is answered 487.
		p.respond(tx, req, sip.StatusRequestTerminated, "Request Terminated", nil)
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
	if err := c.ep.SetSRTP(neg.SRTP); err != nil {
		c.phone.log.Debug("parktest: set SRTP keys", "error", err)
	}
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

// delayReinviteAnswer waits PhoneOptions.ReInviteAnswerDelay before a
// re-INVITE is answered; false if the call ended (or the phone closed)
// first.
func (c *Call) delayReinviteAnswer() bool {
	d := c.phone.reinviteDelay
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return !c.isEnded()
	case <-c.done:
	case <-c.phone.closing:
	}
	return false
}
