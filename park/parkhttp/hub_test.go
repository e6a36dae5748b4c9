package parkhttp

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/park"
)

// The history keeps the last 1,024 events across its wrap: a client that
// missed fewer catches up in order, one that missed more gets a snapshot.
func TestHistoryWraps(t *testing.T) {
	lot, err := park.NewLot(park.Config{})
	require.NoError(t, err)
	h := newHub(lot, "")
	defer h.close()
	for i := range 2*history + 100 {
		h.observe(park.Event{Kind: park.EventRinging, Attempt: i + 1})
	}
	snapshot := func() callsJSON { return callsJSON{Node: "snap"} }
	missed, _, snap := h.after(h.seq-300, snapshot)
	require.Nil(t, snap)
	require.Len(t, missed, 300)
	for i, en := range missed {
		require.Equal(t, h.seq-299+uint64(i), en.seq)
		var ev eventJSON
		require.NoError(t, json.Unmarshal(en.json(""), &ev))
		require.EqualValues(t, en.seq, ev.Attempt, "the event of that ID")
	}
	_, ok := h.parse(h.id(h.seq - history))
	require.True(t, ok, "exactly the history")
	_, ok = h.parse(h.id(h.seq - history - 1))
	require.False(t, ok, "one more than the history")
	ents, seq, snap := h.after(h.seq-history-1, snapshot)
	require.Empty(t, ents)
	require.Equal(t, h.seq, seq)
	require.Contains(t, string(snap), `"kind":"snapshot"`, "too far behind: a snapshot")
	none, _, snap := h.after(h.seq, snapshot)
	require.Empty(t, none)
	require.Nil(t, snap)
}

// appendEvent writes what encoding/json writes, byte for byte.
func TestAppendEventIsJSONMarshal(t *testing.T) {
	now := time.Date(2026, 12, 5, 5, 40, 12, 345678900, time.FixedZone("CET", 3600))
	call := park.CallInfo{Orbit: "*7012", ParkID: "3f9c", Party: `"Ann" <sip:ann@10.0.0.7>;tag=a&b`, Parker: "sip:bob@x",
		Since: now, RecallAt: now.Add(90 * time.Second), State: park.Parked, Attempts: 2}
	for _, e := range []park.Event{
		{Kind: park.EventParked, Time: now, Call: call},
		{Kind: park.EventRinging, Time: now, Call: call, Purpose: park.Recall, Target: "sip:bob@x", Attempt: 1},
		{Kind: park.EventRingFailed, Time: now, Call: call, Purpose: park.Fallback, Err: errors.New("486 Busy\n\t<Here>")},
		{Kind: park.EventEnded, Time: now, Call: park.CallInfo{Orbit: "701", Node: "b", State: park.Ended}, Outcome: park.Lost, Err: errors.New("bad \xff byte, \u2028 and \x01\b\f")},
		{Kind: park.EventMoved, Call: park.CallInfo{Orbit: "701", State: park.Moved, Node: "c"}},
	} {
		want, err := json.Marshal(eventOf(e, "park-a"))
		require.NoError(t, err)
		require.Equal(t, string(want), string(appendEvent(nil, e, "park-a")))
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "sip:ann@10.0.0.7", `"<&>\`, "\x00\x1f\x7f", "\xff\xfe", "é\u2028\u2029😀", strings.Repeat("a", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("appendString(%q) = %s, encoding/json writes %s", s, got, want)
		}
	})
}

// eventJSON is one event of the stream as encoding/json would write it:
// the reference appendEvent is checked against.
type eventJSON struct {
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Call    callJSON  `json:"call"`
	Purpose string    `json:"purpose,omitempty"`
	Target  string    `json:"target,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	Outcome string    `json:"outcome,omitempty"`
	Error   string    `json:"error,omitempty"`
}

func eventOf(e park.Event, node string) eventJSON {
	j := eventJSON{Kind: e.Kind.String(), Time: e.Time.UTC(), Call: callOf(e.Call, node)}
	switch e.Kind {
	case park.EventRinging, park.EventRingFailed:
		j.Purpose, j.Target, j.Attempt = e.Purpose.String(), e.Target, e.Attempt
	case park.EventEnded:
		j.Outcome = e.Outcome.String()
	}
	if e.Err != nil {
		j.Error = e.Err.Error()
	}
	return j
}
