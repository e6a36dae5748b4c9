package media

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTone(t *testing.T) {
	tests := []struct {
		name         string
		hz           float64
		d            time.Duration
		wantDuration time.Duration
		wantHz       float64 // after rounding to whole cycles per loop
	}{
		{name: "a440", hz: 440, d: time.Second, wantDuration: time.Second, wantHz: 440},
		{name: "dial tone", hz: 425, d: 2 * time.Second, wantDuration: 2 * time.Second, wantHz: 425},
		{name: "fractional hz", hz: 1000.4, d: time.Second, wantDuration: time.Second, wantHz: 1000},
		{name: "half hz step", hz: 440.3, d: 2 * time.Second, wantDuration: 2 * time.Second, wantHz: 440.5},
		{name: "one frame", hz: 440, d: FrameDuration, wantDuration: FrameDuration, wantHz: 450},
		{name: "below one cycle", hz: 10, d: FrameDuration, wantDuration: FrameDuration, wantHz: 50},
		{name: "rounds up to a frame", hz: 1000, d: 30 * time.Millisecond, wantDuration: 40 * time.Millisecond, wantHz: 1000},
		{name: "rounds down to a frame", hz: 1000, d: 29 * time.Millisecond, wantDuration: 20 * time.Millisecond, wantHz: 1000},
		{name: "near nyquist", hz: 3999, d: time.Second, wantDuration: time.Second, wantHz: 3999},
		{name: "longest", hz: 440, d: MaxClipDuration, wantDuration: MaxClipDuration, wantHz: 440},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := Tone(tt.name, tt.hz, tt.d)
			require.NoError(t, err)
			require.Equal(t, tt.name, clip.Name())
			require.Equal(t, tt.wantDuration, clip.Duration())
			pcm := clip.PCM()
			require.Zero(t, len(pcm)%SamplesPerFrame, "whole frames only")

			// Measure on at most a second: enough for a 1 Hz resolution.
			window := pcm[:min(len(pcm), SampleRate)]
			require.InDelta(t, toneAmplitude, measureAmplitude(window, tt.wantHz, SampleRate), 0.02*toneAmplitude)
			require.InDelta(t, toneAmplitude/math.Sqrt2, rmsOf(window), 0.01*toneAmplitude)
			for _, s := range window {
				require.LessOrEqual(t, math.Abs(float64(s)), math.Ceil(toneAmplitude))
			}

			// The loop holds whole cycles, so the sample after the last one is
			// the first one again: the step across the join is the step a
			// sine takes there, not a click.
			n := len(pcm)
			require.Zero(t, pcm[0])
			require.InDelta(t, int(pcm[1])-int(pcm[0]), int(pcm[0])-int(pcm[n-1]), 2)
		})
	}
}

func TestToneRejects(t *testing.T) {
	tests := []struct {
		name  string
		hz    float64
		d     time.Duration
		field string // what the message must name
	}{
		{name: "zero hz", hz: 0, d: time.Second, field: "frequency 0 Hz"},
		{name: "negative hz", hz: -440, d: time.Second, field: "frequency -440 Hz"},
		{name: "nyquist", hz: 4000, d: time.Second, field: "frequency 4000 Hz"},
		{name: "above nyquist", hz: 5000, d: time.Second, field: "frequency 5000 Hz"},
		{name: "nan", hz: math.NaN(), d: time.Second, field: "frequency NaN Hz"},
		{name: "infinite", hz: math.Inf(1), d: time.Second, field: "frequency +Inf Hz"},
		{name: "too short", hz: 440, d: 19 * time.Millisecond, field: "duration 19ms"},
		{name: "zero duration", hz: 440, d: 0, field: "duration 0s"},
		{name: "negative duration", hz: 440, d: -time.Second, field: "duration -1s"},
		{name: "too long", hz: 440, d: MaxClipDuration + time.Nanosecond, field: "duration 10m0.000000001s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := Tone(tt.name, tt.hz, tt.d)
			require.Nil(t, clip)
			require.True(t, errors.Is(err, ErrInvalidTone), "%v", err)
			require.ErrorContains(t, err, tt.field)
			require.ErrorContains(t, err, `"`+tt.name+`"`)
		})
	}
}
