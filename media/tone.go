package media

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidTone reports a Tone frequency or duration out of range. The
// wrapping error names the field and the value.
var ErrInvalidTone = errors.New("invalid tone")

// toneAmplitude is the tone's peak, a quarter of full scale (-12 dBFS peak,
// -15 dBFS RMS): about as loud as the built-in music, and far from the G.711
// clipping point.
const toneAmplitude = 0.25 * math.MaxInt16

// Tone returns a clip of a steady sine tone of hz hertz, looped every d.
//
// hz must be in (0, 4000), below the Nyquist frequency of 8 kHz audio, and d
// in [20ms, MaxClipDuration]; otherwise the error wraps ErrInvalidTone. d is
// rounded to the nearest whole 20 ms frame, and the frequency to the nearest
// whole number of cycles per loop (a step of 1/d: 1 Hz for a one second loop,
// 50 Hz for a single frame), so the loop joins without a click. The level is
// -12 dBFS peak.
func Tone(name string, hz float64, d time.Duration) (*Clip, error) {
	if !(hz > 0 && hz < SampleRate/2) { // also rejects NaN
		return nil, fmt.Errorf("media: tone %q: frequency %g Hz outside (0, %d): %w", name, hz, SampleRate/2, ErrInvalidTone)
	}
	if d < FrameDuration || d > MaxClipDuration {
		return nil, fmt.Errorf("media: tone %q: duration %v outside [%v, %v]: %w", name, d, FrameDuration, MaxClipDuration, ErrInvalidTone)
	}
	frames := int((d + FrameDuration/2) / FrameDuration)
	n := frames * SamplesPerFrame
	cycles := max(int64(math.Round(hz*float64(n)/SampleRate)), 1)
	// The loop of n samples holds exactly `cycles` periods. Computing each
	// sample's phase from its index in integers (not by accumulating a float
	// phase) keeps that exact however long the loop.
	pcm := make([]int16, n)
	for i := range pcm {
		phase := 2 * math.Pi * float64(cycles*int64(i)%int64(n)) / float64(n)
		pcm[i] = int16(math.Round(toneAmplitude * math.Sin(phase)))
	}
	return newClipOwning(name, pcm), nil
}
