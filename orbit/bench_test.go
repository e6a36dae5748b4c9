package orbit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

// linearScanAllocator is the baseline the MemoryAllocator is measured
// against: the obvious design, a []bool scanned from the start for the first
// free orbit, under one mutex. Orbit lookup and strings are shared with the
// real allocator so only the free structure differs.
type linearScanAllocator struct {
	index   rangeIndex
	text    orbitText
	errFull error

	mu   sync.Mutex
	used []bool
}

func newLinearScanAllocator(b *testing.B, ranges []Range) *linearScanAllocator {
	m, err := NewMemoryAllocator(ranges, MemoryOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return &linearScanAllocator{index: m.lay.index, text: m.lay.text, errFull: m.lay.errFull, used: make([]bool, m.Len())}
}

func (l *linearScanAllocator) Allocate(context.Context) (Orbit, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, used := range l.used {
		if !used {
			l.used[i] = true
			return l.text.at(i), nil
		}
	}
	return "", l.errFull
}

func (l *linearScanAllocator) Reserve(_ context.Context, o Orbit) error {
	_, i, ok := l.index.find(o)
	if !ok {
		return fmt.Errorf("orbit %q: %w", o, ErrUnknownOrbit)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.used[i] {
		return fmt.Errorf("orbit %q: %w", o, ErrInUse)
	}
	l.used[i] = true
	return nil
}

func (l *linearScanAllocator) Release(_ context.Context, o Orbit) error {
	_, i, ok := l.index.find(o)
	if !ok {
		return fmt.Errorf("orbit %q: %w", o, ErrUnknownOrbit)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.used[i] {
		return fmt.Errorf("orbit %q: %w", o, ErrNotInUse)
	}
	l.used[i] = false
	return nil
}

// benchRanges returns five ranges of size/5 orbits, so both sizes search
// the same number of ranges and only the orbit count changes.
func benchRanges(b *testing.B, size int) []Range {
	var ranges []Range
	for k := 1; k <= 5; k++ {
		start := k * 10000
		r, err := ParseRange(fmt.Sprintf("%d-%d", start, start+size/5-1))
		if err != nil {
			b.Fatal(err)
		}
		ranges = append(ranges, r)
	}
	return ranges
}

// BenchmarkAllocateRelease measures one Allocate plus one Release with half
// the orbits held, releasing a random holder each time as parked calls end
// in no particular order. Under the linear scan and Lowest the held orbits
// pack the low end, so the first hole is on average a quarter of the way
// in: that is the cost the bitmap tree removes.
func BenchmarkAllocateRelease(b *testing.B) {
	allocators := []struct {
		name  string
		build func(b *testing.B, ranges []Range) Allocator
	}{
		{"lru", policyAllocator(LeastRecentlyFreed)},
		{"lowest", policyAllocator(Lowest)},
		{"random", policyAllocator(Random)},
		{"linear-scan", func(b *testing.B, ranges []Range) Allocator { return newLinearScanAllocator(b, ranges) }},
	}
	for _, alloc := range allocators {
		for _, size := range []int{100, MaxPoolLen} {
			b.Run(fmt.Sprintf("%s/orbits=%d", alloc.name, size), func(b *testing.B) {
				ctx := context.Background()
				a := alloc.build(b, benchRanges(b, size))
				rng := rand.New(rand.NewPCG(1, 2))
				held := make([]Orbit, 0, size/2+1)
				for range size / 2 {
					o, err := a.Allocate(ctx)
					if err != nil {
						b.Fatal(err)
					}
					held = append(held, o)
				}
				for b.Loop() {
					o, err := a.Allocate(ctx)
					if err != nil {
						b.Fatal(err)
					}
					held = append(held, o)
					j := rng.IntN(len(held))
					if err := a.Release(ctx, held[j]); err != nil {
						b.Fatal(err)
					}
					held[j] = held[len(held)-1]
					held = held[:len(held)-1]
				}
			})
		}
	}
}

func policyAllocator(p Policy) func(b *testing.B, ranges []Range) Allocator {
	return func(b *testing.B, ranges []Range) Allocator {
		a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: p, Rand: rand.New(rand.NewPCG(3, 4))})
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
}

// BenchmarkTableOwner measures routing an orbit to its pool, which happens
// on every SIP request to an orbit, with 5 and 500 ranges.
func BenchmarkTableOwner(b *testing.B) {
	for _, ranges := range []int{5, 500} {
		b.Run(fmt.Sprintf("ranges=%d", ranges), func(b *testing.B) {
			items := make([]string, ranges)
			for i := range items {
				start := 10000 + i*100
				items[i] = fmt.Sprintf("node%d=%d-%d", i%3, start, start+99)
			}
			table, err := ParseTable(strings.Join(items, ","))
			if err != nil {
				b.Fatal(err)
			}
			o := table.Entries()[ranges/2].Range.At(42)
			for b.Loop() {
				if _, ok := table.Owner(o); !ok {
					b.Fatal("orbit not found")
				}
			}
		})
	}
}
