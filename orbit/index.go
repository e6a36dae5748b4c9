package orbit

import (
	"cmp"
	"slices"
	"strconv"
)

// rangeIndex finds which of a set of non-overlapping ranges holds an orbit,
// by binary search over the ranges sorted by number. Its cost grows with the
// number of ranges (a handful in practice), never with the number of orbits,
// which is what keeps table lookups and allocator calls flat at 50,000
// orbits.
type rangeIndex struct {
	spans []rangeSpan // sorted by first
	total int         // orbits in all ranges
}

// rangeSpan is one range in the index.
type rangeSpan struct {
	first, last uint64 // number.key of the range's ends
	pos         int    // position of the range in the order given
	offset      int    // orbits in the ranges given before this one
}

// newRangeIndex indexes ranges, given in the caller's order, and rejects a
// zero Range and any overlap; an overlap error names both ranges.
func newRangeIndex(ranges []Range) (rangeIndex, error) {
	x := rangeIndex{spans: make([]rangeSpan, len(ranges))}
	for i, r := range ranges {
		if r.Len() == 0 {
			return rangeIndex{}, &RuleError{Subject: "orbit range", Value: "", Rule: ErrSyntax,
				Detail: "range " + strconv.Itoa(i+1) + " is the zero Range"}
		}
		x.spans[i] = rangeSpan{first: r.firstKey(), last: r.lastKey(), pos: i, offset: x.total}
		x.total += r.Len()
	}
	slices.SortFunc(x.spans, func(a, b rangeSpan) int {
		return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.pos, b.pos))
	})
	// Sorted by start, ranges are disjoint exactly when each one starts after
	// its predecessor ends, so neighbours are all that need checking.
	for i := 1; i < len(x.spans); i++ {
		prev, cur := x.spans[i-1], x.spans[i]
		if cur.first <= prev.last {
			earlier, later := ranges[prev.pos], ranges[cur.pos]
			if cur.pos < prev.pos {
				earlier, later = later, earlier
			}
			return rangeIndex{}, &RuleError{Subject: "orbit range", Value: later.String(), Rule: ErrOverlap,
				Detail: "with " + earlier.String()}
		}
	}
	return x, nil
}

// find returns the span holding o and o's position in the concatenation of
// the ranges in the order given. It does not allocate.
func (x *rangeIndex) find(o Orbit) (span *rangeSpan, index int, ok bool) {
	num, rule := scanOrbit(string(o))
	if rule != nil {
		return nil, 0, false
	}
	k := num.key()
	// Find the last span starting at or below k: it is the only one that
	// can hold k. The loop has no data-dependent branch (the compiler turns
	// the if into a conditional move), so random orbits cost no branch
	// mispredictions.
	if len(x.spans) == 0 || x.spans[0].first > k {
		return nil, 0, false
	}
	base, n := 0, len(x.spans)
	for n > 1 {
		half := n / 2
		if x.spans[base+half].first <= k {
			base += half
		}
		n -= half
	}
	if x.spans[base].last < k {
		return nil, 0, false
	}
	span = &x.spans[base]
	return span, span.offset + int(k-span.first), true
}
