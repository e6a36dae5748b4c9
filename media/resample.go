package media

import (
	"fmt"
	"math"
)

// The source sample rates Resample (and so ReadWAV) accepts: from 8 kHz, the
// rate of the phone line, up to 48 kHz, the highest rate hold music ships at.
// Any rate in between works, 11025, 22050 and 32000 Hz included.
const (
	MinSourceRate = SampleRate
	MaxSourceRate = 48000
)

// The anti-aliasing low-pass filter. Everything above 4 kHz folds back into
// the band when decimating to 8 kHz, so the stop band starts at 4 kHz; the pass
// band reaches 3.4 kHz, the top of the telephone band, so nothing a phone can
// play is lost.
const (
	resampleCutoff      = 3700.0 // Hz, the -6 dB point: the middle of the transition band
	resampleTransition  = 600.0  // Hz, full width: 3400 to 4000 Hz
	resampleAttenuation = 70.0   // dB in the stop band, past G.711's ~38 dB SNR
)

// resampleMaxPhases caps the polyphase filter bank. Common rates need few
// phases (48 kHz one, 44.1 kHz 80); an odd rate such as 44101 Hz would need
// 8000, so its positions are rounded to the nearest 1/1024 of a source sample.
// That jitter is below -70 dB at 3.4 kHz, under the filter's own stop band.
const resampleMaxPhases = 1024

// Resample converts pcm, mono samples at rate hertz, to 8 kHz (SampleRate).
// rate must be in [MinSourceRate, MaxSourceRate]; otherwise the error wraps
// ErrUnsupportedFormat. The result has round(len(pcm)*8000/rate) samples and is
// a new slice even when rate is already 8000.
//
// It is a windowed-sinc (Kaiser) low-pass FIR evaluated at each output
// sample's fractional position in the source, through a bank of polyphase
// kernels, so any ratio works, not only integer ones like 48000/8000. It runs
// once at load time, not per call, which is why accuracy wins over speed here.
// Samples beyond either end of pcm count as silence.
func Resample(pcm []int16, rate int) ([]int16, error) {
	if rate < MinSourceRate || rate > MaxSourceRate {
		return nil, fmt.Errorf("media: resample: sample rate %d Hz outside [%d, %d]: %w", rate, MinSourceRate, MaxSourceRate, ErrUnsupportedFormat)
	}
	if rate == SampleRate {
		return append([]int16(nil), pcm...), nil
	}
	// int64: a ten minute 48 kHz source times 8000 overflows a 32-bit int.
	outLen := int((int64(len(pcm))*SampleRate + int64(rate)/2) / int64(rate))
	out := make([]int16, outLen)
	bank := newResampleBank(rate)
	phases := int64(len(bank.kernels))
	for j := range out {
		// Output sample j sits at source position j*rate/8000: an exact
		// integer part and a fraction, so positions never drift.
		pos := int64(j) * int64(rate)
		base := int(pos / SampleRate)
		phase := (pos%SampleRate*phases + SampleRate/2) / SampleRate
		if phase == phases {
			base, phase = base+1, 0
		}
		kernel := bank.kernels[phase]
		first := base - bank.before
		var acc float64
		if first >= 0 && first+len(kernel) <= len(pcm) {
			acc = resampleDot(kernel, pcm[first:first+len(kernel)])
		} else { // near either end: the source is silent outside pcm
			for k, w := range kernel {
				if i := first + k; i >= 0 && i < len(pcm) {
					acc += w * float64(pcm[i])
				}
			}
		}
		out[j] = saturateInt16(acc)
	}
	return out, nil
}

// resampleDot returns the dot product of kernel and window (same length).
// Four running sums instead of one let the additions overlap in the CPU's
// pipeline rather than wait on each other: about twice as fast.
func resampleDot(kernel []float64, window []int16) float64 {
	window = window[:len(kernel)] // one bounds check here instead of one per tap
	var a0, a1, a2, a3 float64
	k := 0
	for ; k+4 <= len(kernel); k += 4 {
		a0 += kernel[k] * float64(window[k])
		a1 += kernel[k+1] * float64(window[k+1])
		a2 += kernel[k+2] * float64(window[k+2])
		a3 += kernel[k+3] * float64(window[k+3])
	}
	for ; k < len(kernel); k++ {
		a0 += kernel[k] * float64(window[k])
	}
	return (a0 + a1) + (a2 + a3)
}

// resampleBank is the low-pass filter for one source rate as a set of
// kernels, one per fractional position (phase) of an output sample between two
// source samples.
type resampleBank struct {
	// before is how many source samples ahead of the output position each
	// kernel starts: kernel[k] weighs source sample base-before+k.
	before  int
	kernels [][]float64
}

// newResampleBank designs the Kaiser-windowed sinc for decimating from rate
// to 8 kHz (Kaiser's formulas for beta and length) and samples it at every
// phase the ratio rate/8000 produces, up to resampleMaxPhases.
func newResampleBank(rate int) *resampleBank {
	fs := float64(rate)
	beta := 0.1102 * (resampleAttenuation - 8.7)
	halfWidth := (resampleAttenuation - 8) / (2.285 * 2 * math.Pi * resampleTransition / fs) / 2
	// 2*cutoff/fs is the ideal low-pass's gain for unity gain at DC.
	gain := 2 * resampleCutoff / fs
	i0Beta := besselI0(beta)
	impulse := func(d float64) float64 { // the filter at d source samples from its centre
		if math.Abs(d) >= halfWidth {
			return 0
		}
		u := d / halfWidth
		return gain * sinc(2*resampleCutoff/fs*d) * besselI0(beta*math.Sqrt(1-u*u)) / i0Beta
	}
	phases := min(SampleRate/gcd(rate, SampleRate), resampleMaxPhases)
	reach := int(math.Ceil(halfWidth))
	bank := &resampleBank{before: reach, kernels: make([][]float64, phases)}
	for p := range bank.kernels {
		frac := float64(p) / float64(phases)
		kernel := make([]float64, 2*reach+1)
		for k := range kernel {
			kernel[k] = impulse(float64(k-reach) - frac)
		}
		bank.kernels[p] = kernel
	}
	return bank
}

// gcd is Euclid's greatest common divisor of two positive integers.
func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// sinc is the normalised sinc, sin(pi x)/(pi x).
func sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// besselI0 is the modified Bessel function of the first kind, order zero, by
// its power series; the terms fall fast for the Kaiser betas used here.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	q := x * x / 4
	for k := 1.0; term > 1e-12*sum; k++ {
		term *= q / (k * k)
		sum += term
	}
	return sum
}

// saturateInt16 rounds x to the nearest int16, clamping at full scale rather
// than wrapping around (a wrap is a loud click).
func saturateInt16(x float64) int16 {
	switch {
	case x >= math.MaxInt16:
		return math.MaxInt16
	case x <= math.MinInt16:
		return math.MinInt16
	}
	return int16(math.Round(x))
}
