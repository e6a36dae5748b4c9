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
