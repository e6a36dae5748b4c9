package media

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBuiltinMusicShape(t *testing.T) {
	music := BuiltinMusic()
	pcm := music.PCM()
	require.Equal(t, "builtin", music.Name())
	require.Equal(t, 25600*time.Millisecond, music.Duration())
	require.Zero(t, len(pcm)%SamplesPerFrame, "whole 20 ms frames, so the loop keeps its beat with no padding")
	again := BuiltinMusic()
	require.Equal(t, pcm, again.PCM(), "deterministic")
	require.NotSame(t, music, again, "no hidden package-level cache")
}

func TestBuiltinMusicLevel(t *testing.T) {
	pcm := BuiltinMusic().PCM()
	const fullScale = 32768.0
	rms := decibels(rmsOf(pcm) / fullScale)
	require.GreaterOrEqual(t, rms, -16.0, "RMS %.2f dBFS", rms)
	require.LessOrEqual(t, rms, -12.0, "RMS %.2f dBFS", rms)

	var peak float64
	for _, s := range pcm {
		peak = max(peak, math.Abs(float64(s)))
	}
	require.Less(t, decibels(peak/fullScale), -3.0, "peaks stay clear of G.711's full scale")

	// Dead air makes a parked caller think the call dropped: every second of
	// the loop is audible.
	for start := 0; start+SampleRate <= len(pcm); start += SampleRate / 2 {
		second := decibels(rmsOf(pcm[start:start+SampleRate]) / fullScale)
		require.Greater(t, second, -26.0, "second from sample %d at %.1f dBFS", start, second)
	}
}

// The sample after the last is the first: the step across the join must look
// like any other step of the music, not like a click.
func TestBuiltinMusicLoopsSeamlessly(t *testing.T) {
	music := BuiltinMusic()
	pcm := music.PCM()
	steps := make([]int, 0, len(pcm))
	for i := 1; i < len(pcm); i++ {
		steps = append(steps, abs(int(pcm[i])-int(pcm[i-1])))
	}
	slices.Sort(steps)
	typical := steps[len(steps)*9/10]
	join := abs(int(pcm[0]) - int(pcm[len(pcm)-1]))
	require.LessOrEqual(t, join, typical, "the join steps %d, 90%% of steps are under %d", join, typical)

	// The same holds for the encoded loop a stream actually plays.
	for _, codec := range []Codec{PCMU, PCMA} {
		frames := music.Frames(codec)
		last := frames.Payload(frames.Len() - 1)
		var tail, head [1]int16
		codec.Decode(tail[:], last[len(last)-1:])
		codec.Decode(head[:], frames.Payload(0)[:1])
		require.LessOrEqual(t, abs(int(head[0])-int(tail[0])), typical+typical/8, "%v", codec)
	}
}

// Music, not a beep: the strongest pitch changes from one second to the next
// and across the loop many notes lead.
func TestBuiltinMusicVaries(t *testing.T) {
	pcm := BuiltinMusic().PCM()
	dominant := map[int]bool{}
	changes := 0
	previous := -1
	for start := 0; start+SampleRate <= len(pcm); start += SampleRate {
		window := pcm[start : start+SampleRate]
		best, bestAmplitude := 0, 0.0
		for midi := 40; midi <= 90; midi++ { // E2 to F#6: every note the piece can play
			if a := measureAmplitude(window, 440*math.Pow(2, float64(midi-69)/12), SampleRate); a > bestAmplitude {
				best, bestAmplitude = midi, a
			}
		}
		dominant[best] = true
		if best != previous {
			changes++
		}
		previous = best
	}
	require.GreaterOrEqual(t, len(dominant), 5, "distinct leading notes: %v", dominant)
	require.GreaterOrEqual(t, changes, 10, "the leading note changed %d times in %d seconds", changes, len(pcm)/SampleRate)
}

func BenchmarkBuiltinMusic(b *testing.B) {
	for b.Loop() {
		if BuiltinMusic() == nil {
			b.Fatal("no music")
		}
	}
}
