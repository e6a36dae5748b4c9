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
// the lot afresh ("sync"), and what the scripts of orbit/redisorbit say
// (the Lua prelude of internal/redislot): a node dropped ("node-down",
// Orbits freed, Orphans left for another node to take over), a node
// stopping that hands its calls over ("handover", Orphans), an orphan
// claimed ("taken": Node took Orbits, From the node they came from), and
// orphans nobody took, freed ("lost", Orbits).
type message struct {
	Kind    string          `json:"kind"`
	Node    string          `json:"node"`
	Event   *wireEvent      `json:"event,omitempty"`
	Orbits  json.RawMessage `json:"orbits,omitempty"`  // a list, or {} when empty (Lua's cjson)
	Orphans json.RawMessage `json:"orphans,omitempty"` // likewise
	From    string          `json:"from,omitempty"`
	Why     string          `json:"why,omitempty"`
}

// record is a parked call as the other nodes read it, and what a node
// taking it over needs (CLUSTER.md 9): the lot's view of the call, and the
// leg's own handoff (its SIP dialog and media), opaque here. The scripts
// find a call that can be taken over by its "handoff" key.
type record struct {
	Orbit    string `json:"orbit"`
	ParkID   string `json:"park_id"`
	Parker   string `json:"parker,omitempty"`
	Party    string `json:"party,omitempty"`
	Since    int64  `json:"since"` // Unix milliseconds
	State    int    `json:"state"`
	Attempts int    `json:"attempts,omitempty"`
	RecallAt int64  `json:"recall_at,omitempty"` // Unix milliseconds; 0 while ringing
	Node     string `json:"node"`
	Handoff  []byte `json:"handoff,omitempty"`
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
	r := record{
		Orbit: string(c.Orbit), ParkID: c.ParkID, Parker: c.Parker, Party: c.Party,
		Since: c.Since.UnixMilli(), State: int(c.State), Attempts: c.Attempts, Node: node,
		Handoff: c.Handoff,
	}
	if !c.RecallAt.IsZero() {
		r.RecallAt = c.RecallAt.UnixMilli()
	}
	return r
}

// info is the call as the lot sees it, without the handoff: a node keeps
// the other nodes' calls to show them, and reads the handoff only of a
// call it takes over (takeover.go).
func (r record) info() park.CallInfo {
	c := park.CallInfo{
		Orbit: orbit.Orbit(r.Orbit), ParkID: r.ParkID, Parker: r.Parker, Party: r.Party,
		Since: time.UnixMilli(r.Since), State: park.State(r.State), Attempts: r.Attempts, Node: r.Node,
	}
	if r.RecallAt != 0 {
		c.RecallAt = time.UnixMilli(r.RecallAt)
	}
	return c
}

// toWire is an event as published: the handoff stays in the record, out
// of what every node hears.
func toWire(e park.Event, node string) *wireEvent {
	call := toRecord(e.Call, node)
	call.Handoff = nil
	w := &wireEvent{
		Kind: int(e.Kind), Time: e.Time.UnixMilli(), Call: call,
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
	case "node-down", "handover", "taken", "lost":
		if _, err := orbitList(m.Orbits); err != nil {
			return m, fmt.Errorf("%w: %s orbits: %w", errBadMessage, m.Kind, err)
		}
		if _, err := orbitList(m.Orphans); err != nil {
			return m, fmt.Errorf("%w: %s orphans: %w", errBadMessage, m.Kind, err)
		}
		if m.Node == "" && m.Kind != "lost" {
			return m, fmt.Errorf("%w: %s without node", errBadMessage, m.Kind)
		}
		return m, nil
	}
	return m, fmt.Errorf("%w: kind %q", errBadMessage, m.Kind)
}

// orbitList reads a list of orbits the scripts wrote: a JSON list, or {}
// (Lua's cjson writes an empty table so), or nothing.
func orbitList(raw json.RawMessage) ([]orbit.Orbit, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, nil
	}
	var out []orbit.Orbit
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}
