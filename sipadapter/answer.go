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

// RejectedError is a final non-2xx answer to an INVITE: busy, declined,
// not found.
type RejectedError struct {
	Code   int
	Reason string
}

func (e *RejectedError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Reason) }

// WaitAnswer waits for the final answer to an INVITE sent with
// sipgo.DialogUA.WriteInvite, and returns nil once it is a 2xx (the caller
// then ACKs). onProvisional, if not nil, sees each 1xx.
//
// When ctx ends first a ringing target gets a CANCEL. A target that never
// answered at all (unreachable, silent) cannot be CANCELled (RFC 3261 §9.1
// needs a provisional response first), and sipgo would wait out Timer B
// (32 s) for it; so a target still silent when ctx ends gets one second more
// for its 180, and then the INVITE is abandoned. A refusal is a
// *RejectedError; an abandoned or cancelled INVITE returns an error
// wrapping ctx's.
func WaitAnswer(ctx context.Context, sess *sipgo.DialogClientSession, onProvisional func(*sip.Response)) error {
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
		if provisional.Load() {
			stopWait(ctx.Err())
		} else {
			stopWait(sipgo.WaitAnswerForceCancelErr)
		}
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
		return fmt.Errorf("no answer: %w", ctx.Err())
	}
	return err
}
