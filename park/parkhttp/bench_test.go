package parkhttp

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/callpark/callpark/park"
)

func benchEvent() park.Event {
	return park.Event{Kind: park.EventParked, Time: time.Now(), Call: park.CallInfo{
		Orbit: "701", ParkID: "3f9c0e2b7a1d4c5e6f708192", Party: "sip:alice@10.0.0.7:5060", Parker: "sip:bob@10.0.0.8:5060",
		Since: time.Now(), RecallAt: time.Now().Add(90 * time.Second), State: park.Parked,
	}}
}

// BenchmarkObserve is what the handler costs the lot's goroutine per
// event, with one stream open: the event kept, the stream woken.
func BenchmarkObserve(b *testing.B) {
	lot, err := park.NewLot(park.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := newHub(lot, "park-a")
	defer h.close()
	s, _, _ := h.subscribe("", func() callsJSON { return callsJSON{} })
	ev := benchEvent()
	b.ReportAllocs()
	for b.Loop() {
		h.observe(ev)
		select {
		case <-s.wake:
		default:
		}
	}
}

// BenchmarkEncode is one event's JSON for the stream, as written
// (appendEvent) and as encoding/json would.
func BenchmarkEncode(b *testing.B) {
	ev := benchEvent()
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 512)
		for b.Loop() {
			buf = appendEvent(buf[:0], ev, "park-a")
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(eventOf(ev, "park-a")); err != nil {
				b.Fatal(err)
			}
		}
	})
}
