package media

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// Reference values from the ITU-T G.711 tables.
func TestG711KnownValues(t *testing.T) {
	tests := []struct {
		codec Codec
		pcm   int16
		code  byte
	}{
		{PCMU, 0, 0xff},
		{PCMU, -1, 0x7f},
		{PCMU, 32767, 0x80},
		{PCMU, -32768, 0x00},
		{PCMA, 0, 0xd5},
		{PCMA, -1, 0x55},
		{PCMA, 32767, 0xaa},
		{PCMA, -32768, 0x2a},
	}
	for _, tt := range tests {
		var b [1]byte
		tt.codec.Encode(b[:], []int16{tt.pcm})
		require.Equalf(t, tt.code, b[0], "%v encode %d", tt.codec, tt.pcm)
	}
}

func TestG711RoundTripWithinQuantisation(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		for s := -32768; s <= 32767; s += 7 {
			var b [1]byte
			var back [1]int16
			c.Encode(b[:], []int16{int16(s)})
			c.Decode(back[:], b[:])
			diff := int(back[0]) - s
			if diff < 0 {
				diff = -diff
			}
			// Segment 7 steps are 1024 wide (µ-law) or 1024 (A-law): error is at most half a step.
			limit := max(abs(s)/16, 16)
			require.LessOrEqualf(t, diff, limit, "%v sample %d decoded as %d", c, s, back[0])
		}
		// Every code decodes and re-encodes to itself (except µ-law's negative zero).
		for i := range 256 {
			var back [1]int16
			var b [1]byte
			c.Decode(back[:], []byte{byte(i)})
			c.Encode(b[:], back[:])
			if c == PCMU && i == 0x7f {
				continue
			}
			require.Equalf(t, byte(i), b[0], "%v code %#x", c, i)
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func TestTranscodeMatchesDecodeEncode(t *testing.T) {
	for i := range 256 {
		for _, pair := range [][2]Codec{{PCMU, PCMA}, {PCMA, PCMU}} {
			p := []byte{byte(i)}
			Transcode(p, pair[0], pair[1])
			var lin [1]int16
			var want [1]byte
			pair[0].Decode(lin[:], []byte{byte(i)})
			pair[1].Encode(want[:], lin[:])
			require.Equal(t, want[0], p[0])
		}
	}
}

func TestNewFramesPadsAndLoops(t *testing.T) {
	pcm := make([]int16, SamplesPerFrame*2+10)
	f := NewFrames(PCMU, pcm)
	require.Equal(t, 3, f.Len())
	require.Len(t, f.Payload(0), SamplesPerFrame)
	require.Equal(t, f.Payload(0), f.Payload(3))
	require.Equal(t, byte(0xff), f.Payload(2)[SamplesPerFrame-1], "padding is µ-law silence")
	require.Equal(t, 1, NewFrames(PCMA, nil).Len())
}
