package orbit

import (
	"errors"
	"slices"
	"testing"
)

// rules lists every sentinel a *RuleError may wrap.
var rules = []error{
	ErrSyntax, ErrFirstDigit, ErrTooManyDigits, ErrPrefixedTooLow, ErrLengthMismatch, ErrPrefixMismatch,
	ErrReversed, ErrRangeTooLarge, ErrOverlap, ErrPoolTooLarge, ErrDuplicateName, ErrNoRanges, ErrUnknownPolicy,
}

// checkRuleError fails unless err is a *RuleError wrapping one of rules.
func checkRuleError(t *testing.T, err error) {
	t.Helper()
	var ruleErr *RuleError
	if !errors.As(err, &ruleErr) {
		t.Fatalf("error %v is %T, not a *RuleError", err, err)
	}
	if !slices.Contains(rules, ruleErr.Rule) {
		t.Fatalf("error %v wraps %v, not a rule sentinel", err, ruleErr.Rule)
	}
}

// everyOrbit returns ranges covering every valid orbit, one per prefix and
// width, built directly because they exceed MaxRangeLen, and their index.
func everyOrbit(t *testing.T) ([]Range, rangeIndex) {
	var ranges []Range
	for _, prefix := range []byte{0, '*', '#'} {
		maxWidth := 9
		if prefix != 0 {
			maxWidth = 8
		}
		for width, low := 1, uint32(1); width <= maxWidth; width, low = width+1, low*10 {
			first := low
			if prefix != 0 && first <= 100 {
				first = 101
			}
			if last := low*10 - 1; first <= last {
				ranges = append(ranges, Range{prefix: prefix, width: uint8(width), first: first, last: last})
			}
		}
	}
	x, err := newRangeIndex(ranges)
	if err != nil {
		t.Fatal(err)
	}
	return ranges, x
}

// FuzzParseOrbit checks ParseOrbit against the lookup path every SIP
// request to an orbit takes: a text is found among all orbits exactly when
// ParseOrbit accepts it, and the orbit found is written back identically.
func FuzzParseOrbit(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		ranges, universe := everyOrbit(t)
		o, err := ParseOrbit(s)
		span, i, found := universe.find(Orbit(s))
		if err != nil {
			checkRuleError(t, err)
			if o != "" || found {
				t.Fatalf("rejected %q (%v) but returned %q; found among all orbits: %v", s, err, o, found)
			}
			return
		}
		if o != Orbit(s) || !found {
			t.Fatalf("accepted %q as %q; found among all orbits: %v", s, o, found)
		}
		if back := ranges[span.pos].At(i - span.offset); back != o {
			t.Fatalf("orbit %q found at %d of %v, which is %q", s, i-span.offset, ranges[span.pos], back)
		}
		one, err := ParseRange(s)
		if err != nil {
			t.Fatalf("orbit %q is not a range of one: %v", s, err)
		}
		if one.Len() != 1 || one.First() != o || one.Last() != o || !one.Contains(o) {
			t.Fatalf("range of one %v from %q: len %d, first %q", one, s, one.Len(), one.First())
		}
	})
}

// FuzzParseRange checks that ParseRange never panics, rejects with a rule
// error, and that every accepted range is consistent and round-trips.
func FuzzParseRange(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			checkRuleError(t, err)
			if r != (Range{}) {
				t.Fatalf("rejected %q (%v) but returned %v", s, err, r)
			}
			return
		}
		n := r.Len()
		if n < 1 || n > MaxRangeLen {
			t.Fatalf("%q: Len %d", s, n)
		}
		if r.At(0) != r.First() || r.At(n-1) != r.Last() {
			t.Fatalf("%q: At(0) %q First %q, At(%d) %q Last %q", s, r.At(0), r.First(), n-1, r.At(n-1), r.Last())
		}
		for _, o := range []Orbit{r.First(), r.At(n / 2), r.Last()} {
			if _, err := ParseOrbit(string(o)); err != nil {
				t.Fatalf("%q: orbit %q of the range is invalid: %v", s, o, err)
			}
			if i, ok := r.Index(o); !ok || r.At(i) != o {
				t.Fatalf("%q: Index(%q) = %d, %v", s, o, i, ok)
			}
		}
		if r.Contains(Orbit(r.Prefix()+"0")) || !r.Overlaps(r) {
			t.Fatalf("%q: contains a zero orbit or does not overlap itself", s)
		}
		again, err := ParseRange(r.String())
		if err != nil || again != r {
			t.Fatalf("%q: String %q parses back as %v, %v", s, r.String(), again, err)
		}
	})
}

// FuzzParseTable checks that ParseTable never panics, rejects with a rule
// error, and that every accepted table routes each range's ends to its own
// entry, respects the pool limit and round-trips through String.
func FuzzParseTable(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string) {
		table, err := ParseTable(spec)
		if err != nil {
			checkRuleError(t, err)
			if table != nil {
				t.Fatalf("rejected %q (%v) but returned a table", spec, err)
			}
			return
		}
		total, perPool := 0, 0
		for _, e := range table.Entries() {
			total += e.Range.Len()
			for _, o := range []Orbit{e.Range.First(), e.Range.Last()} {
				if got, ok := table.Lookup(o); !ok || got != e {
					t.Fatalf("%q: Lookup(%q) = %+v, %v; want %+v", spec, o, got, ok, e)
				}
			}
		}
		for _, pool := range table.Pools() {
			n := table.Len(pool)
			if n < 1 || n > MaxPoolLen {
				t.Fatalf("%q: pool %q has %d orbits", spec, pool, n)
			}
			perPool += n
		}
		if perPool != total {
			t.Fatalf("%q: pools hold %d orbits, entries %d", spec, perPool, total)
		}
		again, err := ParseTable(table.String())
		if err != nil || !slices.Equal(again.Entries(), table.Entries()) {
			t.Fatalf("%q: String %q parses back with error %v", spec, table.String(), err)
		}
	})
}

// FuzzParsePolicy checks that a policy name is accepted only if String
// writes it back identically.
func FuzzParsePolicy(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(s)
		if err != nil {
			checkRuleError(t, err)
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePolicy(%q) = %v", s, p)
		}
	})
}
