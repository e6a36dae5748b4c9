package parkhttp

import (
	"encoding/json"
	"testing"

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
	missed, ok := h.since(h.id(h.seq - 300))
	require.True(t, ok)
	require.Len(t, missed, 300)
	for i, en := range missed {
		require.Equal(t, h.seq-299+uint64(i), en.seq)
		var ev eventJSON
		require.NoError(t, json.Unmarshal(en.data, &ev))
		require.EqualValues(t, en.seq, ev.Attempt, "the event of that ID")
	}
	_, ok = h.since(h.id(h.seq - history))
	require.True(t, ok, "exactly the history")
	_, ok = h.since(h.id(h.seq - history - 1))
	require.False(t, ok, "one more than the history")
	none, ok := h.since(h.id(h.seq))
	require.True(t, ok)
	require.Empty(t, none)
}
