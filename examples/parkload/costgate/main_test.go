package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
	v := []float64{3, 1, 2}
	median(v)
	require.Equal(t, []float64{3, 1, 2}, v, "the caller's values are left in order")
}

func TestParseOptions(t *testing.T) {
	o, err := parseOptions(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "HEAD~1", o.base)
	require.Equal(t, 0.20, o.threshold)
	require.Equal(t, 3, o.rounds)

	o, err = parseOptions([]string{"-base", "652bc0c", "-threshold", "0.1", "-rounds", "5"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, "652bc0c", o.base)
	require.Equal(t, 5, o.rounds)

	for _, bad := range [][]string{{"-rounds", "0"}, {"-threshold", "0"}, {"-calls", "-1"}, {"-nope"}} {
		_, err := parseOptions(bad, io.Discard)
		require.Error(t, err, bad)
	}
}

func TestVerdict(t *testing.T) {
	base := map[string][]float64{"µs per packet": {10, 11, 12}, "µs per cycle": {800, 900, 1000}}
	ok := map[string][]float64{"µs per packet": {13, 12, 14}, "µs per cycle": {900, 1000, 1100}}
	report, regressed := verdict(base, ok, "base", "head", 0.20)
	require.False(t, regressed, report) // +18.2 % and +11.1 %
	require.NotContains(t, report, "REGRESSION")

	worse := map[string][]float64{"µs per packet": {11, 11, 11}, "µs per cycle": {1100, 1090, 2000}}
	report, regressed = verdict(base, worse, "base", "head", 0.20)
	require.True(t, regressed)
	require.Regexp(t, `µs per cycle +900\.00 +1100\.00 +\+22\.2%  <- REGRESSION`, report)
	require.Regexp(t, `µs per packet +11\.00 +11\.00 +\+0\.0%\n`, report)
}
