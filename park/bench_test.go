package park

import (
	"context"
	"fmt"
	"testing"

	"github.com/callpark/callpark/orbit"
)

// nopLeg is the cheapest possible leg, so the benchmarks measure the lot.
type nopLeg struct{}

func (nopLeg) Hold(context.Context, Music) error { return nil }
func (nopLeg) Hangup(context.Context) error      { return nil }

// BenchmarkParkRetrieve is one park followed by one retrieve of the same call,
// in process: the lot's own cost per parked call (timer, orbit, bookkeeping).
func BenchmarkParkRetrieve(b *testing.B) {
	for _, orbits := range []string{"701-799", "10000-19999"} {
		b.Run(fmt.Sprintf("orbits=%s", orbits), func(b *testing.B) {
			lot := newBenchLot(b, orbits)
			ctx := context.Background()
			req := ParkRequest{Leg: nopLeg{}, Parker: "sip:bob@example.com"}
			b.ReportAllocs()
			for b.Loop() {
				c, err := lot.Park(ctx, req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: c.Orbit()}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
		})
	}
}

// BenchmarkParkRetrieveParallel runs park+retrieve cycles from every core
// against one lot, with 500 calls already parked, as a busy server would.
func BenchmarkParkRetrieveParallel(b *testing.B) {
	lot := newBenchLot(b, "10000-19999")
	ctx := context.Background()
	for range 500 {
		if _, err := lot.Park(ctx, ParkRequest{Leg: nopLeg{}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := lot.Park(ctx, ParkRequest{Leg: nopLeg{}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: c.Orbit(), ParkID: c.ID()}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
	b.StopTimer()
	drop(lot)
}

func drop(lot *Lot) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = lot.Shutdown(ctx) // already cancelled: drops every call at once
}

// newBenchLot is a lot with no observer: event delivery is measured apart.
func newBenchLot(b *testing.B, orbits string) *Lot {
	r, err := orbit.ParseRange(orbits)
	if err != nil {
		b.Fatal(err)
	}
	alloc, err := orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	lot, err := NewLot(Config{Orbits: alloc, MusicOnHold: testMusic(b)})
	if err != nil {
		b.Fatal(err)
	}
	return lot
}
