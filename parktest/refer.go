package parktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
)

// ReferResult is what a REFER of ours led to (Call.Refer): its answer, and
// the progress the peer reported in NOTIFYs (RFC 3515 §2.4.4).
type ReferResult struct {
	// Accepted is the REFER's final status: 202, or the code that
	// rejected it.
	Accepted int
	// Notifies are the message/sipfrag bodies of the NOTIFYs, in the
	// order they arrived.
	Notifies []string
	// FinalStatus is the status code of the last NOTIFY's sipfrag: 200 when
	// a park server re-parked the call, 486 when its lot was full.
	FinalStatus int
	// Orbit is the X-Park-Orbit line of that last sipfrag, empty if none.
	Orbit string
}

// referWaiter collects the NOTIFYs of one REFER of ours until the one with
// Subscription-State terminated.
type referWaiter struct {
	id       uint32 // the REFER's CSeq number: the NOTIFYs' Event id
	bodies   []string
	finished bool
	done     chan struct{} // closed on the terminated NOTIFY
}

// Refer sends a REFER with Refer-To: <target> inside the call (a blind
// transfer, or a re-park to a park extension) and waits for its final
// response, then for the NOTIFY ending its subscription. headers are added to
// the REFER (Referred-By, for one). A rejected REFER returns both the result,
// with Accepted set, and a *StatusError; a final sipfrag that cannot be
// parsed returns the result and an error wrapping ErrBadSipfrag. The wait
// goes on after the call ends (a park server may hang up right after the
// 202), until ctx ends.
func (c *Call) Refer(ctx context.Context, target string, headers ...sip.Header) (*ReferResult, error) {
	target = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(target), "<"), ">")
	if _, _, err := parseTarget(target); err != nil {
		return nil, err
	}
	p := c.phone
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	req := c.dlg.newRequest(sip.REFER)
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+target+">"))
	for _, h := range headers {
		req.AppendHeader(sip.HeaderClone(h))
	}
	w := &referWaiter{id: req.CSeq().SeqNo, done: make(chan struct{})}
	// Registered before sending: the first NOTIFY may overtake the 202.
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return nil, ErrCallEnded
	}
	c.refers = append(c.refers, w)
	c.mu.Unlock()
	defer c.dropRefer(w)

	res, err := p.do(ctx, req)
	if err != nil {
		return nil, err
	}
	result := &ReferResult{Accepted: res.StatusCode}
	if !res.IsSuccess() {
		return result, statusError(req, res)
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
	case <-p.closing:
		err = ErrPhoneClosed
	}
	c.mu.Lock()
	result.Notifies = slices.Clone(w.bodies)
	c.mu.Unlock()
	if err != nil {
		return result, err
	}
	frag, err := ParseSipfrag([]byte(result.Notifies[len(result.Notifies)-1]))
	if err != nil {
		return result, err
	}
	result.FinalStatus, result.Orbit = frag.Code, frag.Header("X-Park-Orbit")
	return result, nil
}

// dropRefer forgets a finished REFER; an ended call with no REFER left
// stops being reachable.
func (c *Call) dropRefer(w *referWaiter) {
	c.mu.Lock()
	c.refers = slices.DeleteFunc(c.refers, func(x *referWaiter) bool { return x == w })
	gone := c.ended && len(c.refers) == 0
	c.mu.Unlock()
	if gone {
		c.phone.unregister(c)
	}
}

// eventHeader splits an Event header value into its package and its id
// parameter (RFC 6665 §8.2.1, RFC 3515 §2.4.6).
func eventHeader(value string) (pkg, id string) {
	parts := strings.Split(value, ";")
	pkg = strings.TrimSpace(parts[0])
	for _, param := range parts[1:] {
		k, v, _ := strings.Cut(param, "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") {
			id = strings.TrimSpace(v)
		}
	}
	return pkg, id
}

// terminated reports whether a Subscription-State value ends the
// subscription.
func terminated(state string) bool {
	s, _, _ := strings.Cut(state, ";")
	return strings.EqualFold(strings.TrimSpace(s), "terminated")
}

func (p *Phone) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	callID, localTag, _, ok := dialogIDs(req)
	if ok {
		p.mu.Lock()
		s := p.subs[dialogKey(callID, localTag)]
		p.mu.Unlock()
		if s != nil {
			s.onNotify(req, tx)
			return
		}
		if c := p.lookupCall(req); c != nil {
			c.onReferNotify(req, tx)
			return
		}
	}
	p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
}

// onReferNotify takes a NOTIFY reporting on one of our REFERs.
func (c *Call) onReferNotify(req *sip.Request, tx sip.ServerTransaction) {
	p := c.phone
	pkg, id := eventHeader(headerValue(req.Headers(), "Event"))
	if pkg != "refer" {
		p.respond(tx, req, 489, "Bad Event", nil, sip.NewHeader("Allow-Events", "refer"))
		return
	}
	c.mu.Lock()
	var w *referWaiter
	for _, x := range c.refers {
		if !x.finished && (id == "" || id == strconv.FormatUint(uint64(x.id), 10)) {
			w = x
			break
		}
	}
	if w != nil {
		w.bodies = append(w.bodies, string(req.Body()))
		if terminated(headerValue(req.Headers(), "Subscription-State")) {
			w.finished = true
			close(w.done)
		}
	}
	c.mu.Unlock()
	if w == nil {
		p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
		return
	}
	p.respond(tx, req, sip.StatusOK, "OK", nil)
}

// ReferHandler decides how a phone answers a REFER received in one of its
// calls; referTo is the Refer-To URI without its angle brackets. It runs on
// the request's goroutine and must not block for long.
type ReferHandler func(c *Call, referTo string) ReferReply

// ReferReply is a ReferHandler's decision. The zero value accepts the REFER
// with 202 and reports one final NOTIFY "SIP/2.0 200 OK".
type ReferReply struct {
	// Status answers the REFER: zero means 202 Accepted; another 2xx accepts
	// with that code; 300 to 699 rejects it and nothing else is sent.
	Status int
	// Notify are the sipfrag bodies of the NOTIFYs sent after accepting, in
	// order ("SIP/2.0 100 Trying\r\n", then "SIP/2.0 200 OK\r\nX-Park-Orbit:
	// 701\r\n"); the last one carries Subscription-State
	// terminated;reason=noresource. Empty means a single "SIP/2.0 200 OK".
	Notify []string
	// Follow carries the transfer out the way a phone does (the transferee
	// of RFC 3515): after NOTIFY "100 Trying", call referTo, its URI headers
	// (Replaces) becoming INVITE headers and the REFER's Referred-By (else
	// its From) copied, then NOTIFY the status line of that INVITE's final
	// response. The new call goes to Phone.Transfers; the old one stays up
	// for the referrer to hang up. Notify is ignored.
	Follow bool
}

func (p *Phone) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	c := p.lookupCall(req)
	if c == nil {
		if req.To() != nil && req.To().Params.Has("tag") {
			p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
			return
		}
		p.respond(tx, req, sip.StatusForbidden, "Forbidden", nil, sip.NewHeader("Warning", `399 parktest "REFER outside a call"`))
		return
	}
	if req.CSeq() == nil || !c.dlg.acceptRemoteSeq(req.CSeq().SeqNo) {
		p.respond(tx, req, sip.StatusInternalServerError, "Server Internal Error", nil)
		return
	}
	var referTos []string
	for _, h := range req.Headers() {
		if strings.EqualFold(h.Name(), "Refer-To") || h.Name() == "r" {
			referTos = append(referTos, h.Value())
		}
	}
	if len(referTos) != 1 {
		p.respond(tx, req, sip.StatusBadRequest, "Bad Request", nil,
			sip.NewHeader("Warning", fmt.Sprintf(`399 parktest "want one Refer-To, got %d"`, len(referTos))))
		return
	}
	referTo := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(referTos[0]), "<"), ">")
	reply := ReferReply{Follow: true}
	if p.refer != nil {
		reply = p.refer(c, referTo)
	}
	status := reply.Status
	if status == 0 {
		status = sip.StatusAccepted
	}
	if status < 200 || status > 699 {
		p.log.Warn("parktest: ReferReply.Status out of range, answering 500", "status", status)
		status = sip.StatusInternalServerError
	}
	if status >= 300 {
		p.respond(tx, req, status, reasonPhrase(status), nil)
		return
	}
	reason := "Accepted"
	if status != sip.StatusAccepted {
		reason = "OK"
	}
	p.respond(tx, req, status, reason, nil)
	id := req.CSeq().SeqNo
	if reply.Follow {
		c.followRefer(req, referTo, id)
		return
	}
	frags := reply.Notify
	if len(frags) == 0 {
		frags = []string{"SIP/2.0 200 OK\r\n"}
	}
	for i, frag := range frags {
		if err := c.notifyRefer(id, frag, i == len(frags)-1); err != nil {
			p.log.Debug("parktest: REFER NOTIFY failed", "error", err)
			return
		}
	}
}

// notifyRefer sends one NOTIFY about the REFER numbered id (RFC 3515 §2.4.5).
func (c *Call) notifyRefer(id uint32, frag string, final bool) error {
	req := c.dlg.newRequest(sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", "refer;id="+strconv.FormatUint(uint64(id), 10)))
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(frag))
	res, err := c.phone.do(context.Background(), req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return statusError(req, res)
	}
	return nil
}

// followRefer carries a transfer out (ReferReply.Follow).
func (c *Call) followRefer(refer *sip.Request, referTo string, id uint32) {
	p := c.phone
	if err := c.notifyRefer(id, "SIP/2.0 100 Trying\r\n", false); err != nil {
		p.log.Debug("parktest: REFER NOTIFY failed", "error", err)
	}
	referredBy := headerValue(refer.Headers(), "Referred-By")
	if referredBy == "" {
		referredBy = "<" + refer.From().Address.String() + ">"
	}
	nc, err := p.Call(context.Background(), referTo, CallOptions{Headers: []sip.Header{sip.NewHeader("Referred-By", referredBy)}})
	frag := "SIP/2.0 200 OK\r\n"
	var se *StatusError
	switch {
	case err == nil:
	case errors.As(err, &se):
		frag = fmt.Sprintf("SIP/2.0 %d %s\r\n", se.Code, se.Reason)
	default:
		p.log.Debug("parktest: transfer failed", "refer-to", referTo, "error", err)
		frag = "SIP/2.0 503 Service Unavailable\r\n"
	}
	if err := c.notifyRefer(id, frag, true); err != nil {
		p.log.Debug("parktest: REFER NOTIFY failed", "error", err)
	}
	if nc != nil {
		select {
		case p.transfers <- nc:
		default:
			p.log.Warn("parktest: Transfers is full, call not delivered", "call-id", nc.CallID())
		}
	}
}
