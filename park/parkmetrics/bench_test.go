package parkmetrics

import (
	"testing"
	"time"

	"github.com/callpark/callpark/park"
)

// BenchmarkObserve is what counting costs the lot per event: an ended
// call, the dearest (a counter and two histograms).
func BenchmarkObserve(b *testing.B) {
	lot, err := park.NewLot(park.Config{})
	if err != nil {
		b.Fatal(err)
	}
	c := New(lot)
	defer c.Close()
	now := time.Now()
	ended := park.Event{Kind: park.EventEnded, Time: now.Add(5 * time.Second), Outcome: park.Retrieved,
		Call: park.CallInfo{Orbit: "701", Since: now, State: park.Ended, Outcome: park.Retrieved}}
	b.ReportAllocs()
	for b.Loop() {
		c.observe(ended)
	}
}
