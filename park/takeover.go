package park

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callpark/callpark/orbit"
)

// A parked call outlives its node (CLUSTER.md 9-12). In a cluster the lot
// keeps each Portable leg's Handoff on its call, and the Cluster writes it
// where every node reads it. When a node dies, stops or is fenced, another
// node's lot takes each of its calls in (takeOver): its Adopter continues
// the leg from the handoff, and the call waits in the same orbit, with the
// same park ID, parker and recall time. A call whose party refuses ends as
// Lost, once, on the node that tried. The node the call left forgets it
// without a word (State Moved).

// errHanding is a retrieve's answer while the orbit's call is being handed
// to another node: try again in a moment, there.
func errHanding(o orbit.Orbit) error {
	return fmt.Errorf("orbit %s: call being handed to another node: %w", o, orbit.ErrUnavailable)
}

// errNoHandoff is the reason of a call lost because its record held no
// handoff this node could read.
var errNoHandoff = errors.New("park: the call's handoff is missing or unreadable here")

// handoffOf reads a leg's handoff when the lot is in a cluster and the leg
// is Portable; nil otherwise. A failure is logged: the call stays, but no
// other node could take it over.
func (l *Lot) handoffOf(leg Leg) []byte {
	p, ok := leg.(Portable)
	if !ok || l.cfg.Cluster == nil {
		return nil
	}
	h, err := p.Handoff()
	if err != nil {
		l.log.Warn("reading a parked leg's handoff failed; no other node could take the call over", "err", err)
		return nil
	}
	return h
}

// Update reads the parked leg's Handoff again after its dialog or media
// changed (a re-INVITE, a request sent with a new CSeq) and, in a cluster,
// shares it (EventUpdated), so that a node taking the call over goes on
// from where it stands. It does nothing for a lot alone, a leg that is not
// Portable, or a call that has left.
func (c *Call) Update() {
	l := c.lot
	leg := c.Leg()
	h := l.handoffOf(leg)
	if h == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.gone() || c.leg != leg {
		return
	}
	c.handoff = h
	l.publish(Event{Kind: EventUpdated, Call: c.infoLocked()})
}

// takeOver continues here a call of another node, for Cluster.TakeOver:
// the orbit is this node's already. The Adopter rebuilds the leg and the
// call waits as it did (a call that was ringing rings again, from the
// attempt that was under way). A call the Adopter cannot continue, or
// whose handoff is empty (the cluster could not read it: the Adopter is
// not asked), ends as Lost; ErrClosed, with nothing kept, once Shutdown
// has begun.
func (l *Lot) takeOver(ctx context.Context, info CallInfo) error {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return ErrClosed
	}
	if prev := l.byOrbit[info.Orbit]; prev != nil {
		l.mu.Unlock()
		return fmt.Errorf("park: taking over orbit %s, still held by park ID %s: %w", info.Orbit, prev.id, ErrOrbitInUse)
	}
	c := &Call{
		lot: l, id: info.ParkID, orbit: info.Orbit, party: info.Party, since: info.Since,
		parker: info.Parker, state: Parked, attempts: info.Attempts, handoff: info.Handoff,
		recallAt: info.RecallAt, done: make(chan struct{}),
	}
	l.takers.Add(1)
	l.mu.Unlock()
	defer l.takers.Done()

	var leg Leg
	var err error
	if len(info.Handoff) == 0 {
		// The cluster could not read it (sealed with another key): there
		// is no dialog to continue, and the call is lost.
		err = errNoHandoff
	} else {
		leg, err = l.cfg.Adopter.Adopt(ctx, c)
	}
	if errors.Is(err, ErrClosed) { // the host takes nothing now: another node will
		l.mu.Lock()
		if !c.gone() {
			c.state = Ended // never in the lot, never told of
		}
		l.mu.Unlock()
		return err
	}
	if err == nil && leg == nil {
		err = errors.New("park: adopter returned no leg")
	}
	if err == nil {
		if err = leg.Hold(ctx, l.Music()); err != nil {
			err = fmt.Errorf("park: holding the call taken over: %w", err)
			c.hangup(leg, hangupTimeout)
		}
	}
	var handoff []byte
	if err == nil {
		handoff = l.handoffOf(leg)
	}

	l.mu.Lock()
	if c.gone() { // its party hung up meanwhile (Abandon): that was its end
		l.mu.Unlock()
		return nil
	}
	if err != nil {
		c.endWhyLocked(Lost, err)
		l.mu.Unlock()
		l.release(c.orbit)
		l.log.Warn("call lost: taking it over failed", "orbit", c.orbit, "park_id", c.id, "err", err)
		return nil
	}
	c.leg, c.handoff = leg, handoff
	l.byOrbit[c.orbit] = c
	if k, ok := legKey(leg); ok {
		l.byLeg[k] = c
	}
	l.publish(Event{Kind: EventMoved, Call: c.infoLocked()})
	switch info.State {
	case Recalling, Forwarding:
		// The ring under way died with its node: ring again from there,
		// once (the parker may have heard the old ring stop).
		c.ringFrom = max(1, info.Attempts)
		if info.State == Forwarding {
			c.ringFrom = l.Config().MaxPickupAttempts + 1
		}
		c.startRingingLocked()
	default:
		wait := l.Config().PickupTimeout
		if !info.RecallAt.IsZero() {
			wait = time.Until(info.RecallAt)
		}
		c.recallAt = time.Now().Add(wait)
		c.timer = time.AfterFunc(max(0, wait), c.pickupTimedOut)
	}
	l.mu.Unlock()
	l.log.Debug("call taken over", "orbit", c.orbit, "park_id", c.id, "state", info.State)
	return nil
}

// handOver offers this lot's parked calls with a Portable leg to the other
// nodes at Shutdown (Cluster.HandOver). The calls another node took move
// there and their legs are forgotten; the others are recalled at once. A
// retrieve meanwhile is told to try again (orbit.ErrUnavailable).
func (l *Lot) handOver(ctx context.Context) {
	if l.cfg.Cluster == nil {
		return
	}
	l.mu.Lock()
	var calls []*Call
	var infos []CallInfo
	for _, c := range l.byOrbit {
		if c.state == Parked && c.handoff != nil && c.timer.Stop() {
			c.handing = true
			calls = append(calls, c)
			infos = append(infos, c.infoLocked())
		}
	}
	l.mu.Unlock()
	if len(calls) == 0 {
		return
	}
	taken, err := l.cfg.Cluster.HandOver(ctx, infos)
	if err != nil {
		l.log.Warn("handing calls to other nodes failed; recalling them", "calls", len(calls), "taken", len(taken), "err", err)
	}
	var forget []Portable
	l.mu.Lock()
	for _, c := range calls {
		c.handing = false
		if c.gone() {
			continue // its party hung up meanwhile
		}
		node, ok := taken[c.id]
		if !ok {
			c.startRingingLocked()
			continue
		}
		forget = append(forget, c.leg.(Portable)) // handoff != nil: it is
		c.moveLocked(node)
	}
	l.mu.Unlock()
	for _, p := range forget {
		p.Forget()
	}
	l.log.Info("calls handed to other nodes", "offered", len(calls), "taken", len(forget))
}

// moveLocked takes the call out of this lot without an outcome: another
// node holds it now (node, when known). The caller holds l.mu and forgets
// the leg (Portable.Forget) after unlocking; the orbit is not this node's
// to release any more.
func (c *Call) moveLocked(node string) {
	c.state = Moved
	c.leaveLocked()
	info := c.infoLocked()
	info.Node = node
	c.lot.publish(Event{Kind: EventMoved, Call: info})
	c.lot.checkDrainedLocked()
}

// stallRecheck is how often a lot that is Stalled looks again before it
// acts on a call.
const stallRecheck = 20 * time.Millisecond

// Stalled reports whether this node must not act on its parked calls now:
// it was paused for about its lease, and another node of the cluster may
// have taken them over (orbit.Leased; false for an allocator that is not).
// Recalls wait until it is false; a SIP host plays no hold music meanwhile.
func (l *Lot) Stalled() bool { return l.leased != nil && l.leased.Stalled() }

// waitUnstalled waits until the lot is not Stalled; it reports false if
// the call left meanwhile (moved to another node: Disown).
func (l *Lot) waitUnstalled(c *Call) bool {
	for l.Stalled() {
		time.Sleep(stallRecheck)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !c.gone()
}

// Disown is told that this node no longer holds orbit o: its lease ran out
// while it was paused or cut off from the cluster (orbit/redisorbit's
// Config.OnLost). A call there whose leg is Portable, and was shared, has
// been taken over by another node or soon will be: the lot forgets it
// without a word to its party (State Moved), since the dialog belongs to
// that node now. Any other call there is recalled at once, as its orbit may
// be another call's by now. ErrNotParked when this lot holds no call in o.
func (l *Lot) Disown(o orbit.Orbit) error {
	l.mu.Lock()
	c := l.byOrbit[o]
	if c == nil {
		l.mu.Unlock()
		return fmt.Errorf("orbit %s: %w", o, ErrNotParked)
	}
	if p, ok := c.leg.(Portable); ok && c.handoff != nil {
		c.moveLocked("")
		l.mu.Unlock()
		p.Forget()
		l.log.Warn("call forgotten: its orbit was taken from this node, and the call with it", "orbit", o, "park_id", c.id)
		return nil
	}
	if c.state == Parked && c.timer.Stop() {
		c.startRingingLocked()
	}
	l.mu.Unlock()
	return nil
}
