package sipadapter

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/park"
)

// What a chat reads of each way a call leaves the lot.
func TestNoticeTextForEveryOutcome(t *testing.T) {
	call := park.CallInfo{Orbit: "701", Party: "sip:alice@example.com", Parker: "sip:bob@example.com"}
	text, ok := noticeText(park.Event{Kind: park.EventParked, Call: call})
	require.True(t, ok)
	require.Equal(t, "Parked at 701: sip:alice@example.com, by sip:bob@example.com", text)
	for o, want := range map[park.Outcome]string{
		park.Retrieved: "retrieved", park.Recalled: "recalled", park.Forwarded: "forwarded",
		park.Abandoned: "abandoned", park.Dropped: "dropped",
	} {
		text, ok := noticeText(park.Event{Kind: park.EventEnded, Call: call, Outcome: o})
		require.True(t, ok)
		require.Equal(t, "Left 701: sip:alice@example.com, "+want, text)
	}
	text, _ = noticeText(park.Event{Kind: park.EventEnded, Call: call, Outcome: park.Lost, Err: errors.New("re-INVITE answered 481")})
	require.Equal(t, "Left 701: sip:alice@example.com, lost (re-INVITE answered 481)", text, "a lost call says why")
	text, _ = noticeText(park.Event{Kind: park.EventParked, Call: park.CallInfo{Orbit: "702"}})
	require.Equal(t, "Parked at 702: a caller", text, "nobody named")
	for _, k := range []park.EventKind{park.EventRinging, park.EventRingFailed, park.EventReplaced, park.EventMoved, park.EventUpdated} {
		_, ok := noticeText(park.Event{Kind: k, Call: call})
		require.False(t, ok, "%v is not told", k)
	}
}
