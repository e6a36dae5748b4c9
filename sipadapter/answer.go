package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// silentGrace is how long a target that has sent nothing at all is given,
// once the ring time is over, for a provisional response that may be on its
// way: only after one may the INVITE be CANCELled.
const silentGrace = time.Second

// cancelTimeout bounds the CANCEL of a ringing INVITE. sipgo would send it
// with no deadline and then wait up to 32 s more for the 487, which a phone
// that vanished after its 180 never sends: a recall (and Shutdown, which
// waits for it) would hang on for a minute.
const cancelTimeout = 2 * time.Second

// RejectedError is a final non-2xx answer to an INVITE: busy, declined,
// not found.
type RejectedError struct {
	Code   int
	Reason string
}

func (e *RejectedError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// waitAnswer waits for the final answer to an INVITE sent with
// sipgo.DialogUA.WriteInvite, and returns nil once it is a 2xx (the caller
// then ACKs). onProvisional, if not nil, sees each 1xx.
//
// When ctx ends first a ringing target gets a CANCEL, sent here and given
// two seconds; the 487 is not waited for (RFC 3261 §9.1: a UAC cannot rely
// on it). A target that never answered at all (unreachable, silent) cannot
// be CANCELled (§9.1 needs a provisional response first), and sipgo would
// wait out Timer B (32 s) for it; so a target still silent when ctx ends
// gets one second more for its 180, and then the INVITE is abandoned. A refusal is a
// *RejectedError; an abandoned or cancelled INVITE returns an error
// wrapping ctx's.
func waitAnswer(ctx context.Context, sess *sipgo.DialogClientSession, onProvisional func(*sip.Response)) error {
	var provisional atomic.Bool
	heard := make(chan struct{})
	var heardOnce sync.Once
	waitCtx, stopWait := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopWait(nil)
	go func() {
		select {
		case <-ctx.Done():
		case <-waitCtx.Done():
			return
		}
		if !provisional.Load() {
			grace := time.NewTimer(silentGrace)
			select {
			case <-heard:
			case <-grace.C:
			case <-waitCtx.Done():
			}
			grace.Stop()
		}
		// Either way sipgo stops at once; a ringing target's CANCEL is
		// sent below, with a deadline sipgo's own would not have.
		stopWait(sipgo.WaitAnswerForceCancelErr)
	}()
	opts := sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.IsProvisional() { // 100 Trying too: any 1xx allows a CANCEL
			provisional.Store(true)
			heardOnce.Do(func() { close(heard) })
		}
		if onProvisional != nil && res.IsProvisional() {
			onProvisional(res)
		}
		return nil
	}}
	err := sess.WaitAnswer(waitCtx, opts)
	if err == nil {
		return nil
	}
	var rejected *sipgo.ErrDialogResponse
	if errors.As(err, &rejected) {
		return &RejectedError{Code: rejected.Res.StatusCode, Reason: rejected.Res.Reason}
	}
	if ctx.Err() != nil {
		if !provisional.Load() {
			return fmt.Errorf("no response at all: %w", ctx.Err())
		}
		cancelInvite(ctx, sess)
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
	return err
}

// cancelInvite sends the CANCEL of sess's INVITE (RFC 3261 §9.1: same
// Request-URI, Call-ID, From, To, top Via and CSeq number as the INVITE) and
// waits at most cancelTimeout for its 200. A failure is harmless: the
// target stops ringing on its own, and a late 200 it sends is never ACKed,
// so it hangs up itself.
func cancelInvite(ctx context.Context, sess *sipgo.DialogClientSession) {
	inv := sess.InviteRequest
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	req.AppendHeader(sip.HeaderClone(inv.Via()))
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	sip.CopyHeaders("Route", inv, req)
	req.SetTransport(inv.Transport())
	req.SetSource(inv.Source())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer cancel()
	// The session fills in the INVITE's CSeq number, not incremented, for
	// a CANCEL. The outcome is not needed: see above.
	_, _ = sess.Do(cctx, req)
}
