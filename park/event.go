package park

import (
	"fmt"
	"time"

	"github.com/callpark/callpark/orbit"
)

// State is where a parked call is in its life.
type State int

const (
	// Parked: waiting in its orbit for someone to retrieve it.
	Parked State = iota + 1
	// Recalling: the pickup timeout passed and the parker is being rung.
	Recalling
	// Forwarding: the recalls failed and the fallback is being rung.
	Forwarding
	// Ended: the call has left the lot; Outcome says how.
	Ended
	// Moved: the call went on at another node of the cluster (it died,
	// stopped or was fenced, and another node took its calls over). It
	// has left this lot without an Outcome: the node that holds it now
	// reports how it ends.
	Moved
)

func (s State) String() string {
	switch s {
	case Parked:
		return "parked"
	case Recalling:
		return "recalling"
	case Forwarding:
		return "forwarding"
	case Ended:
		return "ended"
	case Moved:
		return "moved"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Outcome is how a parked call left the lot. Every call gets exactly one.
type Outcome int

const (
	// NoOutcome: the call is still in the lot.
	NoOutcome Outcome = iota
	// Retrieved: someone dialled the orbit and took the call.
	Retrieved
	// Recalled: the parker answered a recall.
	Recalled
	// Forwarded: the fallback answered.
	Forwarded
	// Abandoned: the parked party hung up while parked.
	Abandoned
	// Dropped: the lot hung up the call: no recall or fallback answered, or
	// the lot was shut down with nowhere to send it.
	Dropped
	// Lost: the call could not be kept: the node holding it died or lost
	// its lease and no other node could take it over, or the party
	// refused or ignored the takeover (Event.Err says why).
	Lost
)

func (o Outcome) String() string {
	switch o {
	case NoOutcome:
		return "none"
	case Retrieved:
		return "retrieved"
	case Recalled:
		return "recalled"
	case Forwarded:
		return "forwarded"
	case Abandoned:
		return "abandoned"
	case Dropped:
		return "dropped"
	case Lost:
		return "lost"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// CallInfo is a snapshot of a parked call.
type CallInfo struct {
	Orbit    orbit.Orbit
	ParkID   string    // unique for the lot's life; safe retrieve checks it
	Parker   string    // URI recalls go to; empty when unknown
	Party    string    // who is parked, as the host named it (for display and BLF)
	Since    time.Time // when the call was parked
	State    State
	Attempts int     // recall attempts started so far
	Outcome  Outcome // NoOutcome until State is Ended
	// RecallAt is when the pickup timeout runs out and the parker is rung;
	// zero once the call rings (State Recalling or Forwarding) or ends. A
	// node that takes the call over keeps it.
	RecallAt time.Time
	// Node is the cluster node holding the call; empty for this lot's own
	// calls and when the lot is alone (Config.Cluster). On EventMoved of a
	// call that left this lot, the node it went to, when known.
	Node string
	// Handoff is what another node needs to continue the parked leg, as
	// its host wrote it (Portable.Handoff): set in a cluster on the calls
	// of this lot whose legs are Portable, and on the call an Adopter is
	// given. Opaque to the lot; never changed in place.
	Handoff []byte
}

// EventKind is the kind of change an Event reports.
type EventKind int

const (
	// EventParked: a call entered an orbit.
	EventParked EventKind = iota + 1
	// EventReplaced: a parked call's leg was replaced (attended transfer
	// into park); orbit and timer are unchanged.
	EventReplaced
	// EventRinging: a recall (or the fallback) started ringing Target.
	EventRinging
	// EventRingFailed: that ringing ended without the call being taken: Err
	// says why (refused, no answer, cancelled).
	EventRingFailed
	// EventEnded: the call left the lot with Outcome. Exactly one per call,
	// across a cluster too.
	EventEnded
	// EventMoved: the call went from one node of the cluster to another
	// (takeover, CLUSTER.md 10-11). On the node that took it, Call.Node is
	// empty and the call is parked there as before: same orbit, park ID,
	// parker and recall time. On the node it left, State is Moved and
	// Call.Node names the node it went to, when known. Not an end.
	EventMoved
	// EventUpdated: the parked leg's Handoff changed (a re-INVITE, a new
	// CSeq), in a cluster: the other nodes must know it to take the call
	// over. Nothing a watcher sees has changed.
	EventUpdated
)

func (k EventKind) String() string {
	switch k {
	case EventParked:
		return "parked"
	case EventReplaced:
		return "replaced"
	case EventRinging:
		return "ringing"
	case EventRingFailed:
		return "ring-failed"
	case EventEnded:
		return "ended"
	case EventMoved:
		return "moved"
	case EventUpdated:
		return "updated"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one change in a parked call's life, delivered to observers in the
// order the changes happened.
type Event struct {
	Kind    EventKind
	Time    time.Time
	Call    CallInfo    // the call as it was right after the change
	Purpose DialPurpose // EventRinging, EventRingFailed: recall or fallback
	Target  string      // EventRinging, EventRingFailed: who was rung
	Attempt int         // EventRinging, EventRingFailed: the attempt number
	Outcome Outcome     // EventEnded: how the call left
	// Err is why a ring failed (EventRingFailed), or why a call was
	// Lost (EventEnded); nil on other events.
	Err error
}

func (e Event) String() string {
	s := fmt.Sprintf("%s orbit=%s park-id=%s", e.Kind, e.Call.Orbit, e.Call.ParkID)
	switch e.Kind {
	case EventRinging, EventRingFailed:
		s += fmt.Sprintf(" %s=%s attempt=%d", e.Purpose, e.Target, e.Attempt)
	case EventEnded:
		s += " outcome=" + e.Outcome.String()
	case EventMoved:
		if e.Call.Node != "" {
			s += " to=" + e.Call.Node
		}
	}
	if e.Err != nil {
		s += " err=" + e.Err.Error()
	}
	return s
}

// Observer receives a lot's events. Events are delivered one at a time, in
// order, from a goroutine of the lot's; a slow observer delays later events
// but never the lot itself.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to the Observer interface.
type ObserverFunc func(Event)

// Observe calls f(e).
func (f ObserverFunc) Observe(e Event) { f(e) }
