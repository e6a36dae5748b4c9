package parkhttp

import (
	"testing"
	"time"

	"github.com/callpark/callpark/park"
)

// BenchmarkObserve is what the handler costs the lot per event: encoding
// it once into the history and handing it to one open stream.
func BenchmarkObserve(b *testing.B) {
	lot, err := park.NewLot(park.Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := newHub(lot, "park-a")
	defer h.close()
	s, _, _, _ := h.subscribe("", func() callsJSON { return callsJSON{} })
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-s.ch:
			case <-s.cut:
				return
			case <-h.closed:
				return
			}
		}
	}()
	ev := park.Event{Kind: park.EventParked, Time: time.Now(), Call: park.CallInfo{
		Orbit: "701", ParkID: "3f9c0e2b7a1d4c5e6f708192", Party: "sip:alice@10.0.0.7:5060", Parker: "sip:bob@10.0.0.8:5060",
		Since: time.Now(), RecallAt: time.Now().Add(90 * time.Second), State: park.Parked,
	}}
	b.ReportAllocs()
	for b.Loop() {
		h.observe(ev)
	}
	b.StopTimer()
	h.close()
	<-done
}
