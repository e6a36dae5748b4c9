package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Durations are recorded in a log-linear histogram (the HDR histogram's
// layout): values below 2^histSubBits nanoseconds get a bucket each, and
// every power of two above is cut into 2^(histSubBits-1) equal buckets, so
// a bucket is never wider than 1/64 of its values (< 1.6 % error) from a
// nanosecond to centuries, in 3,776 fixed counters. Recording is an index
// computation and an add: no allocation, no sorting of samples.
const (
	histSubBits = 7
	histBuckets = 1<<histSubBits + (64-histSubBits)*(1<<(histSubBits-1))
)

// bucketOf returns the bucket of v (nanoseconds).
func bucketOf(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	k := bits.Len64(v) - histSubBits // the bucket width is 2^k
	return 1<<histSubBits + (k-1)<<(histSubBits-1) + int(v>>k) - 1<<(histSubBits-1)
}

// bucketBounds returns the lowest and the highest value bucket i holds.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 1<<histSubBits {
		return uint64(i), uint64(i)
	}
	j := i - 1<<histSubBits
	k := uint(j>>(histSubBits-1)) + 1
	m := uint64(j&(1<<(histSubBits-1)-1)) + 1<<(histSubBits-1)
	lo = m << k
	return lo, lo + (1 << k) - 1
}

// Histogram counts durations. The zero value is empty and ready; it is not
// safe for concurrent use: each worker keeps its own and they are merged.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      float64 // nanoseconds, for the mean
	min, max uint64
}

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	h.max = max(h.max, v)
	h.n++
	h.sum += float64(v)
}

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest duration recorded, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean duration, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the duration at or below which a fraction q (0..1) of the
// recorded durations lie: the highest value of the bucket holding that rank,
// clipped to the exact minimum and maximum, so it errs high by at most one
// bucket width (< 1.6 %). 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(max(hi, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// AtomicHistogram is a Histogram many goroutines record into at once: the
// RTP readers of hold mode, one per call, share one. Adds are atomic, so a
// reader never waits for another.
type AtomicHistogram struct {
	counts [histBuckets]atomic.Uint64
	sum    atomic.Uint64 // nanoseconds; 2^64 ns is 584 years of samples
	min    atomic.Uint64 // stored as ^v, so that zero means "none yet"
	max    atomic.Uint64
}

// Record adds one duration; negative ones count as zero.
func (h *AtomicHistogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.sum.Add(v)
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.min.Load() // ^min, larger is smaller
		if ^v <= cur || h.min.CompareAndSwap(cur, ^v) {
			break
		}
	}
}

// Snapshot copies the counts into a plain Histogram.
func (h *AtomicHistogram) Snapshot() *Histogram {
	s := new(Histogram)
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.n += c
	}
	if s.n > 0 {
		s.sum = float64(h.sum.Load())
		s.min = ^h.min.Load()
		s.max = h.max.Load()
	}
	return s
}
