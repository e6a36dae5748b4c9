package orbit

import (
	"errors"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// requireRule checks that err breaks rule, is a *RuleError, and that its
// message names mention.
func requireRule(t *testing.T, err error, rule error, mention string) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, rule)
	var ruleErr *RuleError
	require.True(t, errors.As(err, &ruleErr), "want a *RuleError, got %T", err)
	require.Contains(t, err.Error(), mention)
}

func TestParseOrbitAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"one digit", "1"},
		{"nine", "9"},
		{"plain 100 is fine", "100"},
		{"three digits", "712"},
		{"nine digits, the most unprefixed", "999999999"},
		{"lowest prefixed star", "*101"},
		{"lowest prefixed hash", "#101"},
		{"star four digits", "*7012"},
		{"hash three digits", "#105"},
		{"eight digits after star, the most prefixed", "*99999999"},
		{"eight digits after hash", "#12345678"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOrbit(tc.in)
			require.NoError(t, err)
			require.Equal(t, Orbit(tc.in), o)
		})
	}
}

func TestParseOrbitRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		rule    error
		mention string
	}{
		{"empty", "", ErrSyntax, `orbit "": invalid syntax (empty)`},
		{"prefix alone", "*", ErrSyntax, "no digits after *"},
		{"hash alone", "#", ErrSyntax, `"#"`},
		{"letter", "7a1", ErrSyntax, `unexpected 'a'`},
		{"space inside", "7 1", ErrSyntax, `"7 1"`},
		{"leading space is not trimmed", " 712", ErrSyntax, `" 712"`},
		{"plus sign", "+712", ErrSyntax, `"+712"`},
		{"minus sign", "-712", ErrSyntax, `"-712"`},
		{"double prefix", "**712", ErrSyntax, `unexpected '*'`},
		{"prefix in the middle", "7*12", ErrSyntax, `"7*12"`},
		{"pipe prefix from the Lync regex class [\\*|#]", "|712", ErrSyntax, `"|712"`},
		{"non-ASCII digit", "٧١٢", ErrSyntax, `unexpected '٧'`},
		{"invalid UTF-8", "7\xff", ErrSyntax, "unexpected byte 0xff"},
		{"leading zero", "0712", ErrFirstDigit, `orbit "0712": the first digit must be 1-9`},
		{"zero", "0", ErrFirstDigit, `"0"`},
		{"leading zero after prefix", "*0712", ErrFirstDigit, `"*0712"`},
		{"ten digits", "1000000000", ErrTooManyDigits, `orbit "1000000000": too many digits (at most 9, or 8 after * or #) (10 digits)`},
		{"nine digits after star", "*100000000", ErrTooManyDigits, `"*100000000"`},
		{"nine digits after hash", "#999999999", ErrTooManyDigits, `"#999999999"`},
		{"hash 100", "#100", ErrPrefixedTooLow, `orbit "#100": a prefixed orbit must be above 100 (lowest is #101)`},
		{"star 99", "*99", ErrPrefixedTooLow, "lowest is *101"},
		{"star 1", "*1", ErrPrefixedTooLow, `"*1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseOrbit(tc.in)
			requireRule(t, err, tc.rule, tc.mention)
			require.Empty(t, o)
		})
	}
}

// TestParseOrbitMatchesLyncRegex checks ParseOrbit against Lync's documented
// pattern ([\*|#]?[1-9]\d{0,7})|([1-9]\d{0,8}), anchored, with the stray "|"
// in its character class read as the alternation it was meant to be, plus
// the rule that a prefixed number is above 100.
func TestParseOrbitMatchesLyncRegex(t *testing.T) {
	lync := regexp.MustCompile(`^(?:[*#][1-9]\d{0,7}|[1-9]\d{0,8})$`)
	lyncAccepts := func(s string) bool {
		if !lync.MatchString(s) {
			return false
		}
		if s[0] == '*' || s[0] == '#' {
			n, err := strconv.Atoi(s[1:])
			return err == nil && n > 100
		}
		return true
	}
	var inputs []string
	for _, prefix := range []string{"", "*", "#", "|", "**", "0"} {
		for _, digits := range []string{"", "0", "1", "9", "10", "99", "100", "101", "102", "999", "1000",
			"09", "0101", "12345678", "99999999", "100000000", "123456789", "999999999", "1000000000", "1a", "1 "} {
			inputs = append(inputs, prefix+digits)
		}
	}
	for _, in := range inputs {
		_, err := ParseOrbit(in)
		require.Equal(t, lyncAccepts(in), err == nil, "ParseOrbit(%q) error %v", in, err)
	}
}
