package sipadapter

import (
	"context"
	"sync"
	"time"
)

// An engine's end: the drain of a Shutdown, and what is hung up when it
// runs out.

// Shutdown drains the engine, as http.Server.Shutdown does a web server:
// new parks get 503 and every parked call is recalled at once (then the
// fallback, else BYE), or in a cluster first handed to the other nodes
// (park.Lot.Shutdown); once the lot is empty, BLF watchers hear their last
// NOTIFY, and the calls still relayed (retrieved, recalled, connected) go on
// until their parties hang up. Shutdown returns when nothing is parked,
// ringing or relayed. If ctx ends first, the calls still parked are dropped
// and those still relayed get BYE, and Shutdown returns ctx's error. Calling
// it again is harmless: it finds nothing left to end.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.blf.refuseNew()
	err := e.lot.Shutdown(ctx)
	e.stopCalls()
	e.stopNotices() // the lot has told every end

	// Watchers hear the last state, then that the lot is gone. The final
	// NOTIFYs get their own few seconds even when ctx has run out on the
	// lot: a lamp left lit would show a call that is not there.
	blfCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	if err := e.blf.Close(blfCtx); err != nil {
		e.log.Warn("shutdown: BLF NOTIFYs still unanswered", "err", err)
	}
	cancel()

	if err == nil {
		err = e.waitRelayed(ctx)
	}

	// What is left gets BYE: calls ctx cut short, and any leg a request
	// in progress makes meanwhile; then no new request is taken.
	byeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	e.hangupAll(byeCtx)
	e.waitHandlers(byeCtx)
	e.hangupAll(byeCtx)
	e.cancelTasks()
	e.tasks.Wait()
	e.closeShared()
	e.sched.Close() // every leg has ended: nothing is paced any more
	e.stopObserving()
	return err
}

// waitRelayed waits until the engine holds no connected leg (every relayed
// call has been hung up by its parties), or ctx ends. A leg whose BYE we
// sent is over for this: its party may never answer (a phone gone, a
// client that stopped), and the wait for that answer is hangupAll's, with
// its own bound. Like net/http's Shutdown it polls: a leg starting its BYE
// tells nobody.
func (e *Engine) waitRelayed(ctx context.Context) error {
	n := e.connectedLegs()
	if n == 0 {
		return nil
	}
	e.log.Info("shutdown: waiting for the calls still connected to hang up", "legs", n)
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if e.connectedLegs() == 0 {
				return nil
			}
		case <-ctx.Done():
			e.log.Warn("shutdown: drain time over, hanging up the calls still connected", "legs", e.connectedLegs())
			return ctx.Err()
		}
	}
}

// drainPoll is how often waitRelayed counts the legs still connected.
const drainPoll = 50 * time.Millisecond

// connectedLegs counts the legs neither side has hung up.
func (e *Engine) connectedLegs() int {
	e.mu.Lock()
	legs := make([]*callLeg, 0, len(e.legs))
	for _, l := range e.legs {
		legs = append(legs, l)
	}
	e.mu.Unlock()
	n := 0
	for _, l := range legs { // outside e.mu: a leg takes its lock first
		if !l.hangingUp() {
			n++
		}
	}
	return n
}

// hangupAll sends BYE on every leg the engine holds and frees them.
func (e *Engine) hangupAll(ctx context.Context) {
	e.mu.Lock()
	var legs []*callLeg
	for _, l := range e.legs {
		legs = append(legs, l)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Go(func() { l.Hangup(ctx) })
	}
	wg.Wait()
}

// waitHandlers stops taking requests and waits for those in progress.
func (e *Engine) waitHandlers(ctx context.Context) {
	e.mu.Lock()
	e.stopped = true
	var idle chan struct{}
	if e.active > 0 {
		e.idle = make(chan struct{})
		idle = e.idle
	}
	e.mu.Unlock()
	if idle == nil {
		return
	}
	select {
	case <-idle:
	case <-ctx.Done():
		e.log.Warn("shutdown: requests still in progress", "err", ctx.Err())
	}
}
