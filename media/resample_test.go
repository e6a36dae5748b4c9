package media

import (
	"errors"
	"math"
	"math/cmplx"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// sineSamples returns n samples of a sine of hz hertz and the given peak at rate.
func sineSamples(n int, hz, peak float64, rate int) []int16 {
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(math.Round(peak * math.Sin(2*math.Pi*hz*float64(i)/float64(rate))))
	}
	return pcm
}

// measureAmplitude estimates the peak amplitude of the hz component of pcm,
// sampled at rate: one Hann-windowed DFT bin (what a Goertzel filter computes),
// so a frequency between bins leaks little into it. Rotating phasors stand in
// for a cosine and a sine per sample, which the race detector makes slow.
func measureAmplitude(pcm []int16, hz float64, rate int) float64 {
	unit := func(angle float64) complex128 { return complex(math.Cos(angle), math.Sin(angle)) }
	windowStep, binStep := unit(2*math.Pi/float64(len(pcm))), unit(-2*math.Pi*hz/float64(rate))
	windowPhase, binPhase := complex(1, 0), complex(1, 0)
	var bin complex128
	var windowSum float64
	for _, s := range pcm {
		w := 0.5 - 0.5*real(windowPhase)
		bin += complex(w*float64(s), 0) * binPhase
		windowSum += w
		windowPhase *= windowStep
		binPhase *= binStep
	}
	return 2 * cmplx.Abs(bin) / windowSum
}

// rmsOf returns the RMS of pcm in sample units.
func rmsOf(pcm []int16) float64 {
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// decibels returns 20 log10(ratio).
func decibels(ratio float64) float64 { return 20 * math.Log10(ratio) }

func TestResampleLength(t *testing.T) {
	tests := []struct {
		rate, in, want int
	}{
		{8000, 0, 0},
		{8000, 123, 123},
		{16000, 3, 2}, // 1.5 rounds up
		{16000, 1600, 800},
		{22050, 22050, 8000},
		{44100, 44100, 8000},
		{44100, 1000, 181}, // 181.4
		{48000, 2, 0},      // 0.33
		{48000, 3, 1},      // 0.5 rounds up
		{48000, 48000 * 3, 24000},
		{11025, 11025*2 + 7, 16005}, // 16005.08
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.rate)+"/"+strconv.Itoa(tt.in), func(t *testing.T) {
			out, err := Resample(make([]int16, tt.in), tt.rate)
			require.NoError(t, err)
			require.Len(t, out, tt.want)
		})
	}
}

func TestResamplePassesThrough8k(t *testing.T) {
	in := sineSamples(1000, 1234, 20000, SampleRate)
	in[17] = math.MinInt16
	out, err := Resample(in, SampleRate)
	require.NoError(t, err)
	require.Equal(t, in, out)
	out[0] = 42
	require.NotEqual(t, in[0], out[0], "the result must be a copy, not the caller's slice")
}

// The filter keeps the telephone band and removes what would alias into it.
func TestResampleFrequencyResponse(t *testing.T) {
	const peak = 10000.0
	tests := []struct {
		rate    int
		hz      float64 // input tone
		heardAt float64 // where it lands at 8 kHz: hz, or its alias
		minDB   float64 // output/input amplitude
		maxDB   float64
	}{
		{rate: 48000, hz: 1000, heardAt: 1000, minDB: -1, maxDB: 1},
		{rate: 44100, hz: 1000, heardAt: 1000, minDB: -1, maxDB: 1},
		{rate: 16000, hz: 1000, heardAt: 1000, minDB: -1, maxDB: 1},
		{rate: 22050, hz: 1000, heardAt: 1000, minDB: -1, maxDB: 1},
		{rate: 48000, hz: 300, heardAt: 300, minDB: -1, maxDB: 1},
		{rate: 48000, hz: 3300, heardAt: 3300, minDB: -1, maxDB: 1},
		{rate: 11025, hz: 2000, heardAt: 2000, minDB: -1, maxDB: 1},
		{rate: 47999, hz: 1000, heardAt: 1000, minDB: -1, maxDB: 1}, // 8000 phases, rounded to 1024
		{rate: 8001, hz: 3000, heardAt: 3000, minDB: -1, maxDB: 1},
		{rate: 44100, hz: 3300, heardAt: 3300, minDB: -1, maxDB: 1},
		// Above 4 kHz a tone folds back to 8000-hz: it must be gone.
		{rate: 48000, hz: 6000, heardAt: 2000, minDB: math.Inf(-1), maxDB: -40},
		{rate: 44100, hz: 6000, heardAt: 2000, minDB: math.Inf(-1), maxDB: -40},
		{rate: 16000, hz: 6000, heardAt: 2000, minDB: math.Inf(-1), maxDB: -40},
		{rate: 48000, hz: 4400, heardAt: 3600, minDB: math.Inf(-1), maxDB: -40},
		{rate: 44100, hz: 12000, heardAt: 4000, minDB: math.Inf(-1), maxDB: -40},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.rate)+"/"+strconv.FormatFloat(tt.hz, 'f', -1, 64), func(t *testing.T) {
			in := sineSamples(tt.rate/2, tt.hz, peak, tt.rate) // half a second
			out, err := Resample(in, tt.rate)
			require.NoError(t, err)
			// Skip the edges, where the filter sees the silence beyond the input.
			middle := out[200 : len(out)-200]
			gain := decibels(measureAmplitude(middle, tt.heardAt, SampleRate) / peak)
			require.GreaterOrEqual(t, gain, tt.minDB)
			require.LessOrEqual(t, gain, tt.maxDB)
			// Whatever survives is the tone and nothing else: the RMS matches
			// the amplitude at heardAt (within the same bounds, plus the -40 dB
			// floor for a removed tone).
			total := decibels(rmsOf(middle) * math.Sqrt2 / peak)
			require.LessOrEqual(t, total, tt.maxDB)
			if tt.heardAt != tt.hz {
				return
			}
			// A kept tone lands where it should in time too: each output
			// sample matches the ideal 8 kHz sine to -40 dB, which a wrong
			// fractional position (a phase jitter) would break.
			ideal := sineSamples(len(out), tt.hz, peak, SampleRate)
			errs := make([]int16, 0, len(middle))
			for j := 200; j < len(out)-200; j++ {
				errs = append(errs, out[j]-ideal[j])
			}
			require.Less(t, decibels(rmsOf(errs)*math.Sqrt2/peak), -40.0)
		})
	}
}

func TestResampleRejectsRate(t *testing.T) {
	for _, rate := range []int{-8000, 0, 7999, 48001, 96000} {
		t.Run(strconv.Itoa(rate), func(t *testing.T) {
			out, err := Resample([]int16{1, 2, 3}, rate)
			require.Nil(t, out)
			require.True(t, errors.Is(err, ErrUnsupportedFormat), "%v", err)
			require.ErrorContains(t, err, strconv.Itoa(rate)+" Hz")
		})
	}
}

// A full-scale square wave rings past full scale through a low-pass; the
// overshoot must clamp, not wrap around to the opposite sign.
func TestResampleSaturatesOvershoot(t *testing.T) {
	in := make([]int16, 4800)
	for i := range in {
		in[i] = math.MaxInt16
		if i/24%2 == 1 { // 1 kHz square at 48 kHz
			in[i] = math.MinInt16
		}
	}
	out, err := Resample(in, 48000)
	require.NoError(t, err)
	var clamped int
	for i, s := range out[100 : len(out)-100] {
		j := i + 100
		// The output follows the input's sign around each half period's middle.
		if centre := in[j*6]; j*6%24 == 12 {
			require.Equalf(t, centre > 0, s > 0, "sample %d is %d", j, s)
		}
		if s == math.MaxInt16 || s == math.MinInt16 {
			clamped++
		}
	}
	require.Positive(t, clamped, "the square's Gibbs overshoot should reach full scale")
}

func TestSaturateInt16(t *testing.T) {
	tests := []struct {
		in   float64
		want int16
	}{
		{0, 0},
		{1.4, 1},
		{1.5, 2},
		{-1.5, -2},
		{32766.6, 32767},
		{32767.4, 32767},
		{40000, 32767},
		{-32768.4, -32768},
		{-50000, -32768},
		{math.Inf(1), 32767},
		{math.Inf(-1), -32768},
	}
	for _, tt := range tests {
		require.Equalf(t, tt.want, saturateInt16(tt.in), "saturateInt16(%v)", tt.in)
	}
}

func BenchmarkResample48k(b *testing.B) {
	in := sineSamples(48000, 1000, 10000, 48000) // one second of audio
	b.SetBytes(int64(len(in) * 2))
	for b.Loop() {
		if _, err := Resample(in, 48000); err != nil {
			b.Fatal(err)
		}
	}
}
