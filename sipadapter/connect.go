package sipadapter

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
)

// Calls the engine places: a host's call between extensions (Connect), a
// blind transfer, a recall or the fallback (Dial). Each rings its targets at
// once, as one back-to-back user agent, and the first to answer becomes a
// leg of the engine's, so that its REFERs, holds and hang-ups are served
// like any other.

// Connect answers a new INVITE by ringing targets (the callee's registered
// phones), as EngineConfig.Calls may: the caller hears 180 once one rings;
// the first to answer is bridged with the caller and the others are
// cancelled; when none answers within EngineConfig.RingTime, or the engine
// shuts down,
// the caller hears the most telling refusal (busy, declined), else 480. The
// targets see the caller as party, with the INVITE's display name. An empty
// targets is a 480 at once.
func (e *Engine) Connect(req *sip.Request, tx sip.ServerTransaction, party string, targets []Target) {
	callee := userURI(URIUser(req.Recipient), e.addr)
	if len(targets) == 0 {
		e.log.Info("call refused", "from", party, "to", callee, "status", 480, "why", "not registered")
		e.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		return
	}
	a, answer, ok := e.accept(req, tx, party, false, false)
	if !ok {
		return
	}
	uas := a.Dialog().ServerSession()
	ctx, cancel := context.WithTimeout(uas.Context(), e.cfg.RingTime)
	defer cancel()
	defer context.AfterFunc(e.callsCtx, cancel)()
	// The caller hears ringing once, and never after its final answer: a
	// losing phone's 180 may come late, and sipgo's session must not be
	// sent two responses at once.
	var ringback struct {
		sync.Mutex
		over bool
	}
	from := identity(req.From().DisplayName, party)
	b, err := e.ring(ctx, targets, from, callee, false, func() {
		ringback.Lock()
		defer ringback.Unlock()
		if ringback.over {
			return
		}
		ringback.over = true
		if err := uas.Respond(sip.StatusRinging, "Ringing", nil); err != nil {
			e.log.Debug("180 not sent", "err", err)
		}
	})
	ringback.Lock()
	ringback.over = true
	ringback.Unlock()
	if err != nil {
		if uas.Context().Err() != nil {
			e.log.Info("caller cancelled", "from", party, "to", callee)
			a.Close() // the transaction layer has answered 487
			return
		}
		code, reason := failureStatus(err)
		e.log.Info("call failed", "from", party, "to", callee, "status", code, "why", err)
		e.refuse(a, code, reason)
		return
	}
	if err := e.answerAndBridge(a, answer, b); err != nil {
		e.log.Info("call ended before it was bridged", "from", party, "to", callee, "err", err)
		return
	}
	e.log.Info("call connected", "from", party, "to", callee)
}

// failureStatus is what a caller hears when no phone took the call.
func failureStatus(err error) (int, string) {
	var rejected *RejectedError
	switch {
	case errors.As(err, &rejected) && (rejected.Code == sip.StatusBusyHere || rejected.Code == 600):
		return sip.StatusBusyHere, "Busy Here"
	case errors.As(err, &rejected) && rejected.Code == 603:
		return 603, "Decline"
	case errors.Is(err, ErrNoRTPPort):
		return sip.StatusServiceUnavailable, "Service Unavailable"
	}
	return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
}

// identity is a From header for a call placed on someone's behalf.
func identity(display, uri string) sip.FromHeader {
	var u sip.Uri
	_ = sip.ParseUri(uri, &u)
	return sip.FromHeader{DisplayName: display, Address: u, Params: sip.NewParams()}
}

// ring rings targets at once with an offer from a new RTP port (one kept
// for recalls when reserved, see recallport.go). The first
// to answer becomes the returned leg (named party), acknowledged and with
// its media set up; the others are cancelled, or hung up if they answered
// too. When ctx ends first, nobody answered.
func (e *Engine) ring(ctx context.Context, targets []Target, from sip.FromHeader, party string, reserved bool, onRinging func(), headers ...sip.Header) (*callLeg, error) {
	ep, sdp, err := e.media.Offering(reserved)
	if err != nil {
		return nil, err
	}
	offer, err := sdp.Offer(media.SendRecv)
	if err != nil {
		e.ports.freeEndpoint(ep)
		return nil, err
	}
	sess, err := e.fork(ctx, targets, from, offer.SDP(), onRinging, headers...)
	if err != nil {
		e.ports.freeEndpoint(ep)
		return nil, err
	}
	return confirmAnswer(ctx, sess, offer, legConfig{Endpoint: ep, SDP: sdp, Party: party}, e.newLeg)
}

// fork sends one INVITE per target and returns the first answered session,
// not yet acknowledged (the caller files the leg first). The losing INVITEs
// are cancelled; one that was answered anyway is acknowledged and hung up,
// in the background.
func (e *Engine) fork(ctx context.Context, targets []Target, from sip.FromHeader, sdp []byte, onRinging func(), headers ...sip.Header) (*sipgo.DialogClientSession, error) {
	forkCtx, cancelForks := context.WithCancel(ctx)
	type result struct {
		sess *sipgo.DialogClientSession
		err  error
	}
	results := make(chan result, len(targets))
	for _, t := range targets {
		invite := sip.NewRequest(sip.INVITE, *t.URI.Clone())
		f := sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: sip.NewParams()}
		f.Params.Add("tag", sip.GenerateTagN(16))
		invite.AppendHeader(&f)
		invite.AppendHeader(&sip.ToHeader{Address: *t.URI.Clone(), Params: sip.NewParams()})
		invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		for _, h := range headers {
			invite.AppendHeader(sip.HeaderClone(h))
		}
		invite.SetBody(sdp)
		t.applyTo(invite)
		go func() {
			sess, err := e.uaForRequest(invite).WriteInvite(forkCtx, invite)
			if err != nil {
				results <- result{err: err}
				return
			}
			err = waitAnswer(forkCtx, sess, func(res *sip.Response) {
				if onRinging != nil && (res.StatusCode == sip.StatusRinging || res.StatusCode == sip.StatusSessionInProgress) {
					onRinging()
				}
			})
			if err != nil {
				sess.Close()
				results <- result{err: err}
				return
			}
			results <- result{sess: sess}
		}()
	}
	var errs []error
	for left := len(targets); left > 0; left-- {
		r := <-results
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		cancelForks()
		if left > 1 {
			e.tasks.Go(func() {
				for range left - 1 {
					if late := <-results; late.sess != nil {
						if err := late.sess.Ack(e.tasksCtx); err != nil {
							e.log.Debug("ACK to a second answer failed", "err", err)
						}
						if err := late.sess.Bye(e.tasksCtx); err != nil {
							e.log.Debug("BYE to a second answer failed", "err", err)
						}
						late.sess.Close()
					}
				}
			})
		}
		return r.sess, nil
	}
	cancelForks()
	return nil, bestFailure(errs)
}

// bestFailure picks the error a caller should hear of several forks': a
// refusal (busy, decline) says more than silence.
func bestFailure(errs []error) error {
	var best error
	for _, err := range errs {
		var rejected *RejectedError
		if errors.As(err, &rejected) {
			if best == nil || rejected.Code == sip.StatusBusyHere || rejected.Code >= 600 {
				best = err
			}
		}
	}
	if best != nil {
		return best
	}
	return errors.Join(errs...)
}

// applyTo routes req, a request to t: through its outbound proxy (a Route
// header, whose address sipgo sends to), or straight to its device, over
// its transport.
func (t Target) applyTo(req *sip.Request) {
	transportOf := t.URI
	switch {
	case t.route != nil:
		req.AppendHeader(&sip.RouteHeader{Address: *t.route.Clone()})
		transportOf = *t.route
	case t.dest != nil:
		req.SetDestination(hostPort(*t.dest))
		transportOf = *t.dest
	}
	switch tr, ok := transportOf.UriParams.Get("transport"); {
	case t.Transport != "" && t.route == nil:
		req.SetTransport(t.Transport)
	case ok && tr != "":
		req.SetTransport(strings.ToUpper(tr))
	}
}

// hostPort is where a request to u goes: its host and port, SIP's 5060
// when it names none.
func hostPort(u sip.Uri) string {
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return net.JoinHostPort(strings.Trim(u.Host, "[]"), strconv.Itoa(port))
}
