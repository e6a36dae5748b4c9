package redisorbit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/orbit"
)

// BenchmarkAllocateRelease measures one claim and its release, the orbit
// traffic of one park, on a real redis-server from one node and from three
// (each its own client and connections, as three processes would have),
// beside the in-memory allocator. It reports ops/s (claim + release pairs)
// and the p99 of a pair in µs.
//
//	go test -run XXX -bench AllocateRelease -benchtime 5s ./orbit/redisorbit
func BenchmarkAllocateRelease(b *testing.B) {
	r, err := orbit.ParseRange("10000-19999")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("memory", func(b *testing.B) {
		a, err := orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{})
		if err != nil {
			b.Fatal(err)
		}
		benchPairs(b, []orbit.Allocator{a})
	})
	for _, ahead := range []int{0, -1} {
		for _, nodes := range []int{1, 3} {
			name := fmt.Sprintf("redis-nodes=%d", nodes)
			if ahead < 0 {
				name += "-no-claim-ahead"
			}
			b.Run(name, func(b *testing.B) {
				srv := redistest.Start(b)
				var as []orbit.Allocator
				for i := range nodes {
					a, err := New(context.Background(), Config{Client: srv.Client(), Node: fmt.Sprintf("n%d", i), Ranges: []orbit.Range{r}, ClaimAhead: ahead})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(func() { _ = a.Close(context.Background()) })
					as = append(as, a)
				}
				benchPairs(b, as)
			})
		}
	}
}

// benchPairs runs allocate+release pairs on 16 goroutines per allocator.
func benchPairs(b *testing.B, as []orbit.Allocator) {
	const perNode = 16
	var (
		next atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
		wg   sync.WaitGroup
	)
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for _, a := range as {
		for range perNode {
			wg.Go(func() {
				var mine []time.Duration
				for next.Add(1) <= int64(b.N) {
					t0 := time.Now()
					o, err := a.Allocate(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					if err := a.Release(ctx, o); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "pairs/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
