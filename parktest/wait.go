package parktest

import (
	"context"
	"time"
)

// The phone's timer paths live here, apart from the network code, so that
// each can be tested under testing/synctest (a bubble's fake clock does not
// advance while a goroutine waits on a real socket).

// pollInterval is how often WaitReceived looks at the RTP counters: a tenth
// of a packet time, so a wait ends at most 2 ms after its packet arrived.
const pollInterval = 2 * time.Millisecond

// pollUntil returns nil as soon as cond reports true, checking it at once and
// then every interval; ctx.Err() when ctx ends first; ErrPhoneClosed when
// closing is closed first. The endpoint has no packet-arrival signal to wait
// on, hence the polling.
func pollUntil(ctx context.Context, closing <-chan struct{}, interval time.Duration, cond func() bool) error {
	if cond() {
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if cond() {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-closing:
			return ErrPhoneClosed
		}
	}
}

// sleepUnless waits d and reports true, or reports false as soon as either
// stop channel is closed: an answer delay that a CANCEL or Close cuts short.
func sleepUnless(d time.Duration, stop1, stop2 <-chan struct{}) bool {
	if d <= 0 {
		select {
		case <-stop1:
			return false
		case <-stop2:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop1:
		return false
	case <-stop2:
		return false
	}
}

// retransmitTimers are RFC 3261's T1 and T2 and the give-up time (64×T1)
// for a 2xx to an INVITE that the UAS core resends until the ACK (§13.3.1.4).
type retransmitTimers struct {
	T1, T2, GiveUp time.Duration
}

// retransmitUntil is the UAS side of §13.3.1.4: the 2xx to an INVITE was
// sent once; over an unreliable transport it is resent after T1, then at
// doubling intervals capped at T2, until acked is closed (true) or GiveUp
// has passed since the first send (false). Over a reliable transport nothing
// is resent but the wait is the same. abort (Close) ends the wait at once
// with false.
func retransmitUntil(acked, abort <-chan struct{}, reliable bool, tm retransmitTimers, resend func()) bool {
	giveUp := time.NewTimer(tm.GiveUp)
	defer giveUp.Stop()
	interval := tm.T1
	next := time.NewTimer(interval)
	defer next.Stop()
	for {
		select {
		case <-acked:
			return true
		case <-abort:
			// Both may be ready at once (the peer ACKs and hangs up
			// straight away); select picks at random, the ACK wins.
			select {
			case <-acked:
				return true
			default:
				return false
			}
		case <-giveUp.C:
			return false
		case <-next.C:
			if !reliable {
				resend()
			}
			interval = min(2*interval, tm.T2)
			next.Reset(interval)
		}
	}
}
