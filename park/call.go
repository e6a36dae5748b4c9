package park

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/callpark/callpark/orbit"
)

// hangupTimeout bounds how long the lot waits for a host to hang up a leg or
// an answered call it has no use for; the outcome is already recorded.
const hangupTimeout = 10 * time.Second

// dropHangupTimeout bounds each hang-up once Shutdown's deadline has passed
// (dropAll): a party still there answers a BYE in milliseconds, and one that
// is gone should not hold the process's exit.
const dropHangupTimeout = 2 * time.Second

// Call is the handle of one parked call. Its identity (orbit, park ID, party,
// since) never changes; its state moves forward only, to Ended (or, in a
// cluster, to Moved: another node holds it now).
type Call struct {
	lot   *Lot
	id    string
	orbit orbit.Orbit
	party string
	since time.Time
	done  chan struct{} // closed when the call ends

	// Guarded by lot.mu.
	leg        Leg
	parker     string
	state      State
	outcome    Outcome
	attempts   int
	timer      *time.Timer
	recallAt   time.Time // when timer fires; zero once ringing
	cancelRing context.CancelFunc
	handoff    []byte // the leg's Portable.Handoff, in a cluster
	handing    bool   // being offered to other nodes (Shutdown)
	ringFrom   int    // the recall attempt to ring first: a call taken over while ringing
}

// gone reports whether the call has left the lot: ended, or moved to
// another node. The caller holds lot.mu.
func (c *Call) gone() bool { return c.state == Ended || c.state == Moved }

// Orbit returns the orbit the call was parked in.
func (c *Call) Orbit() orbit.Orbit { return c.orbit }

// ID returns the call's park ID, unique for the lot's life.
func (c *Call) ID() string { return c.id }

// Leg returns the parked leg (for a retrieved call: the leg to connect).
func (c *Call) Leg() Leg {
	c.lot.mu.Lock()
	defer c.lot.mu.Unlock()
	return c.leg
}

// Done is closed when the call has left the lot.
func (c *Call) Done() <-chan struct{} { return c.done }

// Outcome returns how the call left the lot, NoOutcome while it is parked.
func (c *Call) Outcome() Outcome {
	c.lot.mu.Lock()
	defer c.lot.mu.Unlock()
	return c.outcome
}

// Info returns a snapshot of the call.
func (c *Call) Info() CallInfo {
	c.lot.mu.Lock()
	defer c.lot.mu.Unlock()
	return c.infoLocked()
}

func (c *Call) infoLocked() CallInfo {
	return CallInfo{
		Orbit:    c.orbit,
		ParkID:   c.id,
		Parker:   c.parker,
		Party:    c.party,
		Since:    c.since,
		State:    c.state,
		Attempts: c.attempts,
		Outcome:  c.outcome,
		RecallAt: c.recallAt,
		Handoff:  c.handoff,
	}
}

// Abandon records that the parked party hung up: the orbit is free at once
// and a pending or ringing recall is cancelled. It reports whether this ended
// the call (false: it had already left the lot).
func (c *Call) Abandon() bool {
	l := c.lot
	l.mu.Lock()
	if c.gone() {
		l.mu.Unlock()
		return false
	}
	c.endLocked(Abandoned)
	l.mu.Unlock()
	l.release(c.orbit)
	if l.log.Enabled(context.Background(), slog.LevelDebug) { // boxing the attributes costs a fifth of a park
		l.log.Debug("parked party hung up", "orbit", c.orbit, "park_id", c.id)
	}
	return true
}

// ReplaceRequest is what Call.Replace needs: the leg taking the call's place
// and, when they change, who parked it and who is parked.
type ReplaceRequest struct {
	// Leg takes over the orbit. Required.
	Leg Leg
	// Parker, when set, becomes the call's parker (recalls ring it).
	Parker string
	// Party, when set, becomes who is parked (snapshots, events, BLF).
	Party string
}

// Replace puts a new leg in the call's place: the attended transfer into park
// (RFC 3891 Replaces), where the other party takes over the consult call's
// orbit and timer. The new leg is put on hold first, then the old one is hung
// up. ErrNotParked if the call has left the lot.
func (c *Call) Replace(ctx context.Context, req ReplaceRequest) error {
	leg := req.Leg
	if leg == nil {
		return &RequestError{"ReplaceRequest.Leg", nil, "required"}
	}
	if err := checkParker("ReplaceRequest.Parker", req.Parker); err != nil {
		return err
	}
	l := c.lot
	l.mu.Lock()
	err := l.claimLegLocked(leg)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if err := leg.Hold(ctx, l.Music()); err != nil {
		l.forgetLeg(leg)
		return fmt.Errorf("park: holding the replacing leg in orbit %s: %w", c.orbit, err)
	}
	handoff := l.handoffOf(leg)
	l.mu.Lock()
	if c.gone() {
		l.forgetLegLocked(leg)
		l.mu.Unlock()
		return fmt.Errorf("orbit %s, park ID %s: %w", c.orbit, c.id, ErrNotParked)
	}
	old := c.leg
	l.forgetLegLocked(old)
	if k, ok := legKey(leg); ok {
		l.byLeg[k] = c
	}
	c.leg = leg
	c.handoff = handoff
	if req.Parker != "" {
		c.parker = req.Parker
	}
	if req.Party != "" {
		c.party = req.Party
	}
	l.publish(Event{Kind: EventReplaced, Call: c.infoLocked()})
	l.mu.Unlock()
	if err := old.Hangup(ctx); err != nil {
		l.log.Warn("hanging up the replaced leg failed", "orbit", c.orbit, "park_id", c.id, "err", err)
	}
	return nil
}

// endLocked moves the call to Ended with its one outcome, takes it out of its
// orbit, stops its timer and cancels any ringing. The caller holds lot.mu,
// has checked state != Ended, and releases the orbit after unlocking.
func (c *Call) endLocked(o Outcome) { c.endWhyLocked(o, nil) }

// endWhyLocked is endLocked with the reason a call was Lost.
func (c *Call) endWhyLocked(o Outcome, why error) {
	c.state = Ended
	c.outcome = o
	c.leaveLocked()
	c.lot.publish(Event{Kind: EventEnded, Call: c.infoLocked(), Outcome: o, Err: why})
	c.lot.checkDrainedLocked()
}

// leaveLocked takes the call out of the lot: its orbit, its leg, its timer
// and ringing. The caller holds lot.mu and has set the final state.
func (c *Call) leaveLocked() {
	l := c.lot
	if c.timer != nil {
		c.timer.Stop()
	}
	c.recallAt = time.Time{}
	if c.cancelRing != nil {
		c.cancelRing()
	}
	if l.byOrbit[c.orbit] == c {
		delete(l.byOrbit, c.orbit)
	}
	l.forgetLegLocked(c.leg)
	close(c.done)
}

// pickupTimedOut runs on the pickup timer's goroutine. A node just resumed
// from a pause (Lot.Stalled) may no longer own the call: the recall waits
// until it knows.
func (c *Call) pickupTimedOut() {
	c.lot.mu.Lock()
	defer c.lot.mu.Unlock()
	if c.state != Parked {
		return
	}
	if c.lot.Stalled() {
		c.timer.Reset(stallRecheck)
		return
	}
	c.startRingingLocked()
}

// startRingingLocked starts the recall sequence on its own goroutine: the
// call is Recalling from this moment, so no second sequence can start.
func (c *Call) startRingingLocked() {
	c.state = Recalling
	c.recallAt = time.Time{}
	c.lot.ringers.Add(1)
	go c.ring()
}

// ring rings the parker up to MaxPickupAttempts times (once when the lot is
// shutting down), then the fallback, then drops the call. It stops as soon
// as the call ends some other way.
func (c *Call) ring() {
	l := c.lot
	defer l.ringers.Done()
	cfg := l.Config() // as it is now: a reload changes the next sequence
	c.lot.mu.Lock()
	parker, first := c.parker, max(1, c.ringFrom)
	c.lot.mu.Unlock()
	if parker != "" && cfg.Dialer != nil {
		for attempt := first; attempt <= cfg.MaxPickupAttempts; attempt++ {
			if c.ringOnce(Recall, parker, attempt, cfg.RecallRingTime) {
				return
			}
			if l.isClosing() {
				break // shutting down: one recall, then the fallback
			}
		}
	}
	if cfg.FallbackURI != "" && cfg.Dialer != nil {
		if c.ringOnce(Fallback, cfg.FallbackURI, 1, cfg.FallbackRingTime) {
			return
		}
	}
	l.mu.Lock()
	if c.gone() {
		l.mu.Unlock()
		return
	}
	c.endLocked(Dropped)
	l.mu.Unlock()
	l.release(c.orbit)
	c.hangupLeg()
}

// ringOnce makes one recall or fallback attempt. It reports whether the call
// has left the lot (taken by this attempt or ended some other way), in which
// case the sequence stops.
func (c *Call) ringOnce(purpose DialPurpose, target string, attempt int, ringTime time.Duration) (finished bool) {
	l := c.lot
	ctx, cancel := context.WithTimeout(context.Background(), ringTime)
	defer cancel()

	if !l.waitUnstalled(c) {
		return true
	}
	l.mu.Lock()
	if c.gone() {
		l.mu.Unlock()
		return true
	}
	if purpose == Fallback {
		c.state = Forwarding
	} else {
		c.attempts = attempt
	}
	c.cancelRing = cancel
	info := c.infoLocked()
	l.publish(Event{Kind: EventRinging, Call: info, Purpose: purpose, Target: target, Attempt: attempt})
	l.mu.Unlock()

	answer, err := l.cfg.Dialer.Dial(ctx, DialRequest{Purpose: purpose, Target: target, Attempt: attempt, Call: info})
	if err == nil && answer == nil {
		err = errors.New("park: dialer returned neither an answer nor an error")
	}

	l.mu.Lock()
	c.cancelRing = nil
	if c.gone() {
		// Taken meanwhile (retrieved, hung up, shut down, moved to another
		// node): the answered call, if any, has nothing to connect to.
		l.mu.Unlock()
		if answer != nil {
			hangupAnswer(answer, l, c)
		}
		return true
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no answer within %v: %w", ringTime, err)
		}
		l.publish(Event{Kind: EventRingFailed, Call: c.infoLocked(), Purpose: purpose, Target: target, Attempt: attempt, Err: err})
		l.mu.Unlock()
		return false
	}
	outcome := Recalled
	if purpose == Fallback {
		outcome = Forwarded
	}
	leg := c.leg
	// The outcome is decided here, before Connect: the orbit is free as soon
	// as the call is answered, and a retrieve from now on finds it empty.
	c.endLocked(outcome)
	l.mu.Unlock()
	l.release(c.orbit)

	connectCtx, cancelConnect := context.WithTimeout(context.Background(), hangupTimeout)
	defer cancelConnect()
	if err := answer.Connect(connectCtx, leg); err != nil {
		l.log.Warn("connecting the answered call failed; hanging up both", "orbit", c.orbit, "park_id", c.id, "target", target, "err", err)
		hangupAnswer(answer, l, c)
		c.hangupLeg()
	}
	return true
}

func hangupAnswer(a Answered, l *Lot, c *Call) {
	ctx, cancel := context.WithTimeout(context.Background(), hangupTimeout)
	defer cancel()
	if err := a.Hangup(ctx); err != nil {
		l.log.Warn("hanging up an answered call failed", "orbit", c.orbit, "park_id", c.id, "err", err)
	}
}

// hangupLeg hangs up a dropped call's leg.
func (c *Call) hangupLeg() { c.hangupLegWithin(hangupTimeout) }

// hangupLegWithin hangs up a dropped call's leg, waiting at most d.
func (c *Call) hangupLegWithin(d time.Duration) {
	c.hangup(c.Leg(), d)
}

// hangup hangs up leg, one of the call's, waiting at most d.
func (c *Call) hangup(leg Leg, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := leg.Hangup(ctx); err != nil {
		c.lot.log.Warn("hanging up a dropped call failed", "orbit", c.orbit, "park_id", c.id, "err", err)
	}
}
