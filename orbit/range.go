package orbit

import (
	"fmt"
	"strconv"
	"strings"
)

// Range is a contiguous run of orbits sharing a prefix and a width, such as
// 701-799 or *7000-*7099. It is a small comparable value: two ranges parsed
// from "750" and "750-750" are equal. The zero Range is empty: it holds no
// orbit, prints as "", and is rejected wherever a range is required.
type Range struct {
	prefix      byte   // 0, '*' or '#'
	width       uint8  // digits after the prefix; 0 only in the zero Range
	first, last uint32 // first <= last
}

// ParseRange parses "start-end" ("701-799", "*7000-*7099", "#101-#199") or a
// single orbit ("750", a range of one). Surrounding spaces, and spaces around
// the "-", are ignored because ranges come from flags and config files typed
// by people. Both ends must be valid orbits (see [ParseOrbit]) of the same
// prefix and number of digits, start <= end, and the range may hold at most
// [MaxRangeLen] orbits.
func ParseRange(s string) (Range, error) {
	fail := func(rule error, detail string) (Range, error) {
		return Range{}, &RuleError{Subject: "orbit range", Value: s, Rule: rule, Detail: detail}
	}
	text := strings.TrimSpace(s)
	startText, endText, isPair := strings.Cut(text, "-")
	startText = strings.TrimSpace(startText)
	if !isPair {
		endText = startText
	}
	endText = strings.TrimSpace(endText)

	start, rule := scanOrbit(startText)
	if rule != nil {
		return fail(rule, fmt.Sprintf("start %q: %s", startText, orbitDetail(startText, rule)))
	}
	end, rule := scanOrbit(endText)
	if rule != nil {
		return fail(rule, fmt.Sprintf("end %q: %s", endText, orbitDetail(endText, rule)))
	}
	if start.prefix != end.prefix {
		return fail(ErrPrefixMismatch, fmt.Sprintf("start %q, end %q", startText, endText))
	}
	if start.width != end.width {
		return fail(ErrLengthMismatch, fmt.Sprintf("start %s has %d, end %s has %d",
			startText, start.width, endText, end.width))
	}
	if start.value > end.value {
		return fail(ErrReversed, fmt.Sprintf("%s > %s", startText, endText))
	}
	if n := end.value - start.value + 1; n > MaxRangeLen {
		return fail(ErrRangeTooLarge, strconv.FormatUint(uint64(n), 10)+" orbits")
	}
	return Range{prefix: start.prefix, width: start.width, first: start.value, last: end.value}, nil
}

// String returns the range as "start-end", even for a range of one, so the
// text form is always the same shape; [ParseRange] reads it back.
func (r Range) String() string {
	if r.width == 0 {
		return ""
	}
	return string(r.First()) + "-" + string(r.Last())
}

// Prefix returns the prefix shared by every orbit of r: "", "*" or "#".
func (r Range) Prefix() string { return prefixString(r.prefix) }

// Len returns the number of orbits in r, 0 for the zero Range.
func (r Range) Len() int {
	if r.width == 0 {
		return 0
	}
	return int(r.last-r.first) + 1
}

// Contains reports whether o is one of r's orbits, written exactly as r
// writes it: "0712" or " 712" are not orbit 712.
func (r Range) Contains(o Orbit) bool {
	_, ok := r.Index(o)
	return ok
}

// At returns the i-th orbit of r, counting from 0. It panics if i is not in
// [0, r.Len()), like indexing a slice out of range.
func (r Range) At(i int) Orbit {
	if i < 0 || i >= r.Len() {
		panic(fmt.Sprintf("orbit: index %d out of range %q of length %d", i, r.String(), r.Len()))
	}
	return Orbit(prefixString(r.prefix) + strconv.FormatUint(uint64(r.first)+uint64(i), 10))
}

// Index returns the position of o in r, counting from 0, and whether o is in
// r at all. It is the inverse of [Range.At].
func (r Range) Index(o Orbit) (int, bool) {
	if r.width == 0 {
		return 0, false
	}
	n, rule := scanOrbit(string(o))
	if rule != nil || n.prefix != r.prefix || n.width != r.width || n.value < r.first || n.value > r.last {
		return 0, false
	}
	return int(n.value - r.first), true
}

// First returns the lowest orbit of r, "" for the zero Range.
func (r Range) First() Orbit {
	if r.width == 0 {
		return ""
	}
	return r.At(0)
}

// Last returns the highest orbit of r, "" for the zero Range.
func (r Range) Last() Orbit {
	if r.width == 0 {
		return ""
	}
	return r.At(r.Len() - 1)
}

// Overlaps reports whether r and other share at least one orbit: same prefix,
// same width and intersecting numbers. Ranges of different widths never
// overlap because no orbit has a leading zero (7000 and 700 are different
// orbits however they are dialed).
func (r Range) Overlaps(other Range) bool {
	return r.width != 0 && r.prefix == other.prefix && r.width == other.width &&
		r.first <= other.last && other.first <= r.last
}

// firstKey and lastKey place r's ends on the line ordered by number.key.
func (r Range) firstKey() uint64 {
	return number{prefix: r.prefix, width: r.width, value: r.first}.key()
}

func (r Range) lastKey() uint64 {
	return number{prefix: r.prefix, width: r.width, value: r.last}.key()
}
