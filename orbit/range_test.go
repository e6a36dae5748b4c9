package orbit

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func mustRange(t testing.TB, s string) Range {
	t.Helper()
	r, err := ParseRange(s)
	require.NoError(t, err)
	return r
}

func TestParseRangeAccepts(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		str         string
		prefix      string
		len         int
		first, last Orbit
	}{
		{"plain", "701-799", "701-799", "", 99, "701", "799"},
		{"star", "*7000-*7099", "*7000-*7099", "*", 100, "*7000", "*7099"},
		{"hash from the lowest prefixed", "#101-#199", "#101-#199", "#", 99, "#101", "#199"},
		{"plain 100 is fine", "100-199", "100-199", "", 100, "100", "199"},
		{"one digit", "1-9", "1-9", "", 9, "1", "9"},
		{"single orbit is a range of one", "750", "750-750", "", 1, "750", "750"},
		{"range of one written out", "750-750", "750-750", "", 1, "750", "750"},
		{"largest unprefixed orbit", "999999999", "999999999-999999999", "", 1, "999999999", "999999999"},
		{"largest prefixed orbit", "*99999999", "*99999999-*99999999", "*", 1, "*99999999", "*99999999"},
		{"10,000 orbits, the most", "10000-19999", "10000-19999", "", 10000, "10000", "19999"},
		{"surrounding spaces trimmed", "  701-799\t", "701-799", "", 99, "701", "799"},
		{"spaces around the dash", "701 - 799", "701-799", "", 99, "701", "799"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.str, r.String())
			require.Equal(t, tc.prefix, r.Prefix())
			require.Equal(t, tc.len, r.Len())
			require.Equal(t, tc.first, r.First())
			require.Equal(t, tc.last, r.Last())
			again, err := ParseRange(r.String())
			require.NoError(t, err)
			require.Equal(t, r, again)
		})
	}
}

func TestParseRangeRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		rule    error
		mention string
	}{
		{"empty", "", ErrSyntax, `orbit range "": invalid syntax (start "": empty)`},
		{"spaces only", "   ", ErrSyntax, `start "": empty`},
		{"missing end", "701-", ErrSyntax, `end "": empty`},
		{"missing start", "-799", ErrSyntax, `start "": empty`},
		{"two dashes", "701-750-799", ErrSyntax, `end "750-799": unexpected '-'`},
		{"letters", "abc-def", ErrSyntax, `start "abc"`},
		{"leading zero", "0701-0799", ErrFirstDigit, `start "0701": starts with 0`},
		{"leading zero at the end", "701-079", ErrFirstDigit, `end "079"`},
		{"ten digits", "1000000000-1000000001", ErrTooManyDigits, `"1000000000"`},
		{"nine digits after a prefix", "*100000000-*100000001", ErrTooManyDigits, `"*100000000"`},
		{"star 99 to star 100", "*99-*100", ErrPrefixedTooLow,
			`orbit range "*99-*100": a prefixed orbit must be above 100 (start "*99": lowest is *101)`},
		{"hash 100", "#100-#199", ErrPrefixedTooLow, `start "#100": lowest is #101`},
		{"prefix mismatch", "*701-#799", ErrPrefixMismatch, `start "*701", end "#799"`},
		{"prefix on one end only", "*701-799", ErrPrefixMismatch, `"*701-799"`},
		{"length mismatch", "99-100", ErrLengthMismatch, "start 99 has 2, end 100 has 3"},
		{"prefixed length mismatch", "*999-*1000", ErrLengthMismatch, `"*999-*1000"`},
		{"reversed", "799-701", ErrReversed, `orbit range "799-701": start must not be above end (799 > 701)`},
		{"10,001 orbits", "10000-20000", ErrRangeTooLarge, `"10000-20000": more than 10000 orbits in one range (10001 orbits)`},
		{"whole width", "100000000-999999999", ErrRangeTooLarge, "900000000 orbits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRange(tc.in)
			requireRule(t, err, tc.rule, tc.mention)
			require.Zero(t, r)
		})
	}
}

func TestRangeContainsIndexAt(t *testing.T) {
	tests := []struct {
		name  string
		rng   string
		orbit Orbit
		index int
		in    bool
	}{
		{"first", "701-799", "701", 0, true},
		{"middle", "701-799", "750", 49, true},
		{"last", "701-799", "799", 98, true},
		{"below", "701-799", "700", 0, false},
		{"above", "701-799", "800", 0, false},
		{"other width", "701-799", "7010", 0, false},
		{"leading zero is not the orbit", "1000-1999", "0999", 0, false},
		{"prefix missing", "*7000-*7099", "7012", 0, false},
		{"prefix present", "*7000-*7099", "*7012", 12, true},
		{"other prefix", "*7000-*7099", "#7012", 0, false},
		{"prefixed orbit in a plain range", "7000-7099", "*7012", 0, false},
		{"space is not trimmed", "701-799", " 712", 0, false},
		{"invalid text", "701-799", "7x2", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRange(t, tc.rng)
			require.Equal(t, tc.in, r.Contains(tc.orbit))
			i, ok := r.Index(tc.orbit)
			require.Equal(t, tc.in, ok)
			require.Equal(t, tc.index, i)
			if tc.in {
				require.Equal(t, tc.orbit, r.At(i))
			}
		})
	}
}

func TestRangeAtEveryIndex(t *testing.T) {
	r := mustRange(t, "#101-#199")
	for i := range r.Len() {
		o := r.At(i)
		j, ok := r.Index(o)
		require.True(t, ok, "orbit %s", o)
		require.Equal(t, i, j)
	}
	require.Equal(t, r.First(), r.At(0))
	require.Equal(t, r.Last(), r.At(r.Len()-1))
}

func TestRangeAtPanicsOutOfRange(t *testing.T) {
	r := mustRange(t, "701-799")
	for _, i := range []int{-1, 99, 1000} {
		require.Panics(t, func() { r.At(i) }, "At(%d)", i)
	}
}

func TestRangeOverlaps(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"same", "701-799", "701-799", true},
		{"inside", "701-799", "750-760", true},
		{"touching at one orbit", "701-750", "750-799", true},
		{"adjacent", "701-750", "751-799", false},
		{"disjoint", "701-799", "801-899", false},
		{"different widths never overlap", "701-799", "7010-7990", false},
		{"different prefixes never overlap", "*7000-*7099", "#7000-#7099", false},
		{"prefix against none", "*7000-*7099", "7000-7099", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := mustRange(t, tc.a), mustRange(t, tc.b)
			require.Equal(t, tc.want, a.Overlaps(b))
			require.Equal(t, tc.want, b.Overlaps(a))
		})
	}
}

func TestZeroRangeIsEmpty(t *testing.T) {
	var r Range
	require.Equal(t, 0, r.Len())
	require.Empty(t, r.String())
	require.Empty(t, r.First())
	require.Empty(t, r.Last())
	require.False(t, r.Contains("1"))
	require.False(t, r.Overlaps(r))
	require.False(t, r.Overlaps(mustRange(t, "1-9")))
	require.Panics(t, func() { r.At(0) })
}
