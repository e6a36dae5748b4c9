package redispark

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// What the lot's nodes say to each other on its events channel, and the
// record of a parked call in the lot's calls hash: JSON, the enums as
// park's values.

// message is one publication on the events channel: a node's event
// ("event"), a node that wrote its calls again and asks everyone to read
// the lot afresh ("sync"), or a node dropped by the scripts ("node-down",
// written by the Lua prelude of internal/redislot).
type message struct {
	Kind   string          `json:"kind"`
	Node   string          `json:"node"`
	Event  *wireEvent      `json:"event,omitempty"`
	Orbits json.RawMessage `json:"orbits,omitempty"` // node-down: a list, or {} when empty (Lua's cjson)
	Why    string          `json:"why,omitempty"`
}

// record is a parked call as the other nodes read it. Issue 13's takeover
// adds the call's dialog beside these fields.
type record struct {
	Orbit    string `json:"orbit"`
	ParkID   string `json:"park_id"`
	Parker   string `json:"parker,omitempty"`
	Party    string `json:"party,omitempty"`
	Since    int64  `json:"since"` // Unix milliseconds
	State    int    `json:"state"`
	Attempts int    `json:"attempts,omitempty"`
	Node     string `json:"node"`
}

type wireEvent struct {
	Kind    int    `json:"kind"`
	Time    int64  `json:"time"` // Unix milliseconds
	Call    record `json:"call"`
	Purpose int    `json:"purpose,omitempty"`
	Target  string `json:"target,omitempty"`
	Attempt int    `json:"attempt,omitempty"`
	Outcome int    `json:"outcome,omitempty"`
	Err     string `json:"err,omitempty"`
}

func toRecord(c park.CallInfo, node string) record {
	return record{
		Orbit: string(c.Orbit), ParkID: c.ParkID, Parker: c.Parker, Party: c.Party,
		Since: c.Since.UnixMilli(), State: int(c.State), Attempts: c.Attempts, Node: node,
	}
}

func (r record) info() park.CallInfo {
	return park.CallInfo{
		Orbit: orbit.Orbit(r.Orbit), ParkID: r.ParkID, Parker: r.Parker, Party: r.Party,
		Since: time.UnixMilli(r.Since), State: park.State(r.State), Attempts: r.Attempts, Node: r.Node,
	}
}

func toWire(e park.Event, node string) *wireEvent {
	w := &wireEvent{
		Kind: int(e.Kind), Time: e.Time.UnixMilli(), Call: toRecord(e.Call, node),
		Purpose: int(e.Purpose), Target: e.Target, Attempt: e.Attempt, Outcome: int(e.Outcome),
	}
	if e.Err != nil {
		w.Err = e.Err.Error()
	}
	return w
}

func (w *wireEvent) event() park.Event {
	e := park.Event{
		Kind: park.EventKind(w.Kind), Time: time.UnixMilli(w.Time), Call: w.Call.info(),
		Purpose: park.DialPurpose(w.Purpose), Target: w.Target, Attempt: w.Attempt, Outcome: park.Outcome(w.Outcome),
	}
	if w.Err != "" {
		e.Err = errors.New(w.Err)
	}
	return e
}

// errBadMessage is wrapped by parse errors: a message no version of this
// package wrote (logged and skipped).
var errBadMessage = errors.New("redispark: bad message")

// parseMessage reads one publication of the events channel.
func parseMessage(payload []byte) (message, error) {
	var m message
	if err := json.Unmarshal(payload, &m); err != nil {
		return m, fmt.Errorf("%w: %w", errBadMessage, err)
	}
	switch m.Kind {
	case "event":
		if m.Event == nil || m.Node == "" || m.Event.Call.Orbit == "" {
			return m, fmt.Errorf("%w: event without call or node", errBadMessage)
		}
		return m, nil
	case "sync":
		if m.Node == "" {
			return m, fmt.Errorf("%w: sync without node", errBadMessage)
		}
		return m, nil
	case "node-down":
		// The node's orbits, for other readers (a node knows the calls it
		// heard of); checked all the same.
		if len(m.Orbits) > 0 && m.Orbits[0] == '[' {
			var orbits []string
			if err := json.Unmarshal(m.Orbits, &orbits); err != nil {
				return m, fmt.Errorf("%w: node-down orbits: %w", errBadMessage, err)
			}
		}
		if m.Node == "" {
			return m, fmt.Errorf("%w: node-down without node", errBadMessage)
		}
		return m, nil
	}
	return m, fmt.Errorf("%w: kind %q", errBadMessage, m.Kind)
}
