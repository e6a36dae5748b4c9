package parktest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// Placing a call: the INVITE, its retransmissions and CANCEL, the ACK.

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
	if opts.SRTP != 0 && !opts.SRTP.Valid() {
		return nil, fmt.Errorf("%w: CallOptions.SRTP %v", ErrInvalidOptions, opts.SRTP)
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
		SRTPSuite:      opts.SRTP,
		SRTPKey:        media.NewSRTPKey(), // one for the call, whoever offers SRTP
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
	var heard *audioLog
	epOpts := media.EndpointOptions{
		Remote: neg.Remote, Codec: neg.Codec, PayloadType: neg.PayloadType,
		TelephoneEvent: neg.TelephoneEvent, Scheduler: p.sched, Logger: p.log,
		SRTP: neg.SRTP,
	}
	if opts.KeepAudio {
		heard = &audioLog{}
		epOpts.OnAudio = heard.add
	}
	var wire *audioLog
	if opts.KeepWire {
		wire = &audioLog{}
		epOpts.OnPacket = wire.add
	}
	ep, err := media.NewEndpoint(conn, epOpts)
	if err != nil {
		return fail(fmt.Errorf("%w: 200 OK to INVITE %s: %w", ErrBadSDP, target, err))
	}
	c := &Call{
		phone: p, dlg: d, outgoing: true, setup: res.CloneHeaders(), ep: ep, heard: heard, wire: wire,
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
