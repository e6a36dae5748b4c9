package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// recallChoice is what the parker does with one recall.
type recallChoice int

const (
	recallAnswer   recallChoice = iota // 180, then 200 after a moment; talk; hang up
	recallRefuse                       // 486 Busy Here
	recallIgnore                       // let it ring until the server CANCELs
	recallRetrieve                     // let it ring and retrieve the orbit meanwhile: the retrieve wins
)

// recallEvent is what the worker hears of a recall.
type recallEvent struct {
	choice recallChoice
	at     time.Time
	orbit  string                     // the recall's From user
	sess   *sipgo.DialogServerSession // answered
	err    error                      // the answer failed
}

// recallBox receives the recalls of one call: the agent hands every INVITE
// to its parker URI to serve, in sipgo's handler goroutine.
type recallBox struct {
	w      *soakWorker
	parker string
	events chan recallEvent

	mu     sync.Mutex
	closed bool
}

func (w *soakWorker) expectRecalls() *recallBox {
	b := &recallBox{w: w, parker: fmt.Sprintf("parker%d", w.r.seq.Add(1)), events: make(chan recallEvent, 16)}
	w.a.recalls.Store(b.parker, b.serve)
	return b
}

// close stops taking recalls; an answered one the worker never took is
// hung up.
func (b *recallBox) close() {
	b.w.a.recalls.Delete(b.parker)
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for {
		select {
		case ev := <-b.events:
			if ev.sess != nil {
				b.w.r.anomalies.add("recall answered but never taken")
				_ = b.w.r.hangupRecall(ev.sess)
			}
		default:
			return
		}
	}
}

// deliver passes ev to the worker, or reports false once the call is over.
func (b *recallBox) deliver(ev recallEvent) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.events <- ev // 16 deep; a call sees at most -attempts (≤ 10) recalls
	return true
}

// hangupRecall ends an answered recall from the parker's side.
func (r *soakRun) hangupRecall(sess *sipgo.DialogServerSession) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.timeout)
	defer cancel()
	err := sess.Bye(ctx)
	sess.Close()
	r.dialogs.Add(-1)
	return err
}

// serve answers one recall INVITE as the worker's choice says. It runs in
// sipgo's handler goroutine, which must not return before the final
// answer (sipgo ends an unanswered transaction then).
func (b *recallBox) serve(req *sip.Request, tx sip.ServerTransaction) {
	r := b.w.r
	cfg := r.cfg
	ev := recallEvent{at: time.Now(), choice: recallChoice(rand.IntN(4))}
	if from := req.From(); from != nil {
		ev.orbit = from.Address.User
	}
	respond := func(code int, reason string) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	// The choices that end the recall without our 2xx are told to the
	// worker first: the server's BYE to the parked party, which follows,
	// may arrive before this handler goes on.
	switch ev.choice {
	case recallRefuse:
		if !b.deliver(ev) {
			r.anomalies.add("recall after its call ended")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		respond(sip.StatusBusyHere, "Busy Here")
		awaitAck(tx, cfg.timeout)
		return
	case recallIgnore, recallRetrieve:
		// sipgo answers the CANCEL and the INVITE (487) itself; the
		// transaction then lingers (Timer I), so the CANCEL is watched
		// for, not the end of the transaction.
		cancelled := make(chan struct{})
		var once sync.Once
		if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
			return // the transaction ended already
		}
		respond(sip.StatusRinging, "Ringing")
		if !b.deliver(ev) {
			r.anomalies.add("recall after its call ended")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		t := time.NewTimer(cfg.recallRing + cfg.timeout)
		defer t.Stop()
		select {
		case <-cancelled: // the ring ran out, or a retrieve won
			awaitAck(tx, cfg.timeout) // of the 487
		case <-tx.Done():
		case <-t.C:
			what := "ignored"
			if ev.choice == recallRetrieve {
				what = "retrieved meanwhile"
			}
			r.anomalies.add("recall never cancelled (" + what + ")")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		}
		return
	}
	// recallAnswer.
	respond(sip.StatusRinging, "Ringing")
	time.Sleep(time.Duration(rand.Int64N(int64(min(cfg.recallRing/2, 300*time.Millisecond)))))
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		r.anomalies.add("recall after its call ended")
		respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		return
	}
	sess, err := b.w.a.answered.ReadInvite(req, tx)
	if err != nil {
		ev.err = err
		respond(sip.StatusBadRequest, "Bad Request")
	} else if err := sess.RespondSDP(b.w.offers[rtpParker]); err != nil { // returns once the ACK is in
		ev.err = err
		sess.Close()
	} else {
		ev.sess = sess
		r.dialogs.Add(1)
	}
	if !b.deliver(ev) {
		if ev.sess != nil {
			r.anomalies.add("recall answered after its call ended")
			_ = r.hangupRecall(ev.sess)
		}
	}
}

// awaitAck waits for the ACK of a final non-2xx answer: sipgo hands it to
// whoever reads tx.Acks(), and with nobody reading it parks a goroutine
// until the transaction ends (Timer I, 5 s).
func awaitAck(tx sip.ServerTransaction, limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-t.C:
	}
}

// awaitRecalls waits, as the parker, for the recalls of c until the call
// ends: the worker's choice for each recall decides how.
func (w *soakWorker) awaitRecalls(c *soakCall, box *recallBox, prefix string) result {
	cfg := w.r.cfg
	limit := cfg.pickupTimeout + time.Duration(cfg.attempts)*(cfg.recallRing+2*cfg.timeout) + cfg.timeout
	deadline := time.NewTimer(limit - time.Since(c.at))
	defer deadline.Stop()
	last := ""
	recalls := 0
	for {
		select {
		case ev := <-box.events:
			if recalls++; recalls == 1 {
				w.r.recallDelay.Record(ev.at.Sub(c.at))
			}
			if recalls > cfg.attempts {
				w.r.anomalies.add("recall more than -attempts times")
			}
			if ev.orbit != c.orbit {
				w.r.anomalies.add("recall from another orbit than the call's")
			}
			switch ev.choice {
			case recallRefuse:
				last = "recall refused (486)"
			case recallIgnore:
				last = "recall rang out (CANCEL)"
			case recallRetrieve:
				return w.retrieveDuringRecall(c, prefix)
			case recallAnswer:
				if ev.err != nil {
					w.hangup(c.parked)
					return fail("recall-answer", ev.err.Error())
				}
				return w.talkToRecall(c, ev.sess, prefix)
			}
		case <-c.parked.Context().Done():
			// The server ended the call after the last recall: take in a
			// recall it may have been about.
			select {
			case ev := <-box.events:
				if ev.choice == recallRefuse {
					last = "recall refused (486)"
				} else if ev.choice == recallIgnore {
					last = "recall rang out (CANCEL)"
				}
			default:
			}
			w.ended(c.parked)
			if last == "" {
				return fail(prefix+"parked", "hung up by the server before any recall")
			}
			return done(prefix + "timed out, " + last + ", the server hung up")
		case <-deadline.C:
			w.hangup(c.parked)
			return fail("recall", "the call never ended")
		}
	}
}

// talkToRecall: the parker answered; talk, hang up, and the server passes
// the BYE on to the parked party.
func (w *soakWorker) talkToRecall(c *soakCall, sess *sipgo.DialogServerSession, prefix string) result {
	w.pause(500 * time.Millisecond)
	if err := w.r.hangupRecall(sess); err != nil {
		w.hangup(c.parked)
		return failErr("recall-bye", err)
	}
	if !w.waitEnded(c.parked) {
		w.hangup(c.parked)
		return fail("recall", "the server's BYE to the parked party never came")
	}
	return done(prefix + "timed out, recall answered, the parker hung up")
}

// retrieveDuringRecall: while the recall rings, the orbit is retrieved; the
// retrieve wins and the recall is cancelled.
func (w *soakWorker) retrieveDuringRecall(c *soakCall, prefix string) result {
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve-during-recall", err)
	}
	w.pause(500 * time.Millisecond)
	return w.endBridged(got, c.parked, prefix+"timed out, retrieved while the recall rang")
}
