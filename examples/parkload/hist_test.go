package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	// Consecutive buckets tile the values: each starts one past the end
	// of the one before, and bucketOf maps both ends back to the bucket.
	var next uint64
	for i := range histBuckets {
		lo, hi := bucketBounds(i)
		require.Equal(t, next, lo, "bucket %d", i)
		require.GreaterOrEqual(t, hi, lo)
		require.Equal(t, i, bucketOf(lo), "low end of bucket %d", i)
		require.Equal(t, i, bucketOf(hi), "high end of bucket %d", i)
		next = hi + 1
	}
	require.Zero(t, next, "the last bucket ends at the largest uint64")
	require.Equal(t, histBuckets-1, bucketOf(math.MaxUint64))
}

func TestBucketWidthWithinPrecision(t *testing.T) {
	for i := 1 << histSubBits; i < histBuckets; i++ {
		lo, hi := bucketBounds(i)
		require.LessOrEqual(t, float64(hi-lo+1)/float64(lo), 1.0/64, "bucket %d [%d, %d]", i, lo, hi)
	}
}

func TestQuantilesAgainstSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-20ms", func() time.Duration { return time.Duration(rng.Int64N(int64(20 * time.Millisecond))) }},
		{"exponential, mean 2ms", func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) }},
		{"log-normal around 1ms", func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()) * float64(time.Millisecond)) }},
		{"small integers", func() time.Duration { return time.Duration(rng.IntN(100)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h Histogram
			samples := make([]time.Duration, 100000)
			for i := range samples {
				samples[i] = tc.gen()
				h.Record(samples[i])
			}
			slices.Sort(samples)
			require.Equal(t, uint64(len(samples)), h.Count())
			require.Equal(t, samples[len(samples)-1], h.Max())
			for _, q := range []float64{0, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(samples)))), 1)
				exact := samples[rank-1]
				got := h.Quantile(q)
				// Never below the exact value, and above by at most one
				// bucket width (1/64), or one unit for tiny values.
				require.GreaterOrEqual(t, got, exact, "q=%v", q)
				require.LessOrEqual(t, float64(got-exact), float64(exact)/64+1, "q=%v exact %v got %v", q, exact, got)
			}
		})
	}
}

func TestHistogramEmptyAndNegative(t *testing.T) {
	var h Histogram
	require.Zero(t, h.Quantile(0.99))
	require.Zero(t, h.Mean())
	require.Zero(t, h.Max())
	h.Record(-time.Second) // clock steps: counted as zero, not lost
	require.Equal(t, uint64(1), h.Count())
	require.Zero(t, h.Quantile(0.5))
	h.Record(3 * time.Millisecond)
	require.Equal(t, 3*time.Millisecond, h.Max())
	require.Equal(t, 1500*time.Microsecond, h.Mean())
}

func TestHistogramMerge(t *testing.T) {
	var a, b, all Histogram
	for i := range 1000 {
		d := time.Duration(i) * time.Microsecond
		all.Record(d)
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	var empty Histogram
	a.Merge(&empty)
	a.Merge(&b)
	require.Equal(t, all, a)
	empty.Merge(&all)
	require.Equal(t, all, empty)
}

func TestAtomicHistogramMatchesPlain(t *testing.T) {
	var plain Histogram
	var shared AtomicHistogram
	require.Zero(t, shared.Snapshot().Count())
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 5000 {
				d := time.Duration(rng.Int64N(int64(50 * time.Millisecond)))
				shared.Record(d)
				mu.Lock()
				plain.Record(d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	snap := shared.Snapshot()
	require.Equal(t, plain.counts, snap.counts)
	require.Equal(t, plain.n, snap.n)
	require.Equal(t, plain.min, snap.min)
	require.Equal(t, plain.max, snap.max)
	require.InDelta(t, plain.sum, snap.sum, 1e-6*plain.sum)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		require.Equal(t, plain.Quantile(q), snap.Quantile(q))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	for i := range b.N {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}

func BenchmarkAtomicHistogramRecord(b *testing.B) {
	var h AtomicHistogram
	for i := range b.N {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}
