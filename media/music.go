package media

import (
	"math"
)

// The built-in hold music: eight bars in C major at 75 beats a minute, the
// progression C - Am - F - G - C - Am - Dm7 - G7, played by a soft pad, a bass,
// a plucked arpeggio and a melody with a light echo. G7 resolves into the C of
// the next pass, so the loop sounds like a piece, not a cut.
//
// At 75 BPM a beat is 0.8 s, exactly 40 frames of 20 ms, so the 32 beats make
// 25.6 s: 1280 whole frames and no partial one to pad.
const (
	musicName      = "builtin"
	musicBeat      = SampleRate * 60 / 75 // samples per beat: 6400
	musicBeats     = 32
	musicLength    = musicBeat * musicBeats // 204800 samples, 25.6 s
	musicTargetRMS = -14.0                  // dBFS: in the usual -16..-12 band of telephony prompts
	musicCeiling   = -3.5                   // dBFS: no peak goes past this, so G.711 never clips
	musicEchoDelay = musicBeat * 3 / 4      // a dotted eighth
	// musicLimiterReach is how far (in samples, 20 ms) the limiter looks either
	// side of a peak: the gain eases down and back up over about 40 ms.
	musicLimiterReach = SamplesPerFrame
)

// musicMaxPartials bounds the partials of a timbre.
const musicMaxPartials = 4

// musicTimbre is one instrument: additive partials under an ADSR envelope.
type musicTimbre struct {
	partials [musicMaxPartials]musicPartial // unused ones have amplitude 0
	attack   float64                        // seconds from silence to peak
	decay    float64                        // seconds: time constant of the fall from peak to sustain
	sustain  float64                        // level held while the note is down, relative to the peak
	release  float64                        // seconds from note-off to silence
}

// musicPartial is one sine of a timbre, at ratio times the note's frequency.
type musicPartial struct {
	ratio, amplitude float64
}

// musicNote is one note of the score, timed in beats from the start of the loop.
type musicNote struct {
	start, length float64 // beats
	midi          int     // MIDI note number: 60 is middle C, 69 is A 440 Hz
	level         float64 // linear amplitude before the final normalisation
}

// musicChord is one bar of the progression, voiced for each part.
type musicChord struct {
	bass int    // root: the bass plays root, fifth, root
	pad  []int  // sustained chord
	arp  [4]int // the four tones the arpeggio walks through
}

// BuiltinMusic returns the built-in hold music: 25.6 s of gentle instrumental
// music in C major, looping seamlessly, at about -14 dBFS RMS with peaks below
// -3.5 dBFS. It is generated in code, deterministically (no random numbers):
// every call returns the same samples.
//
// Each call synthesises the clip anew, some 30 ms of CPU and 5 MB of scratch
// memory for a 400 KB clip; there is no hidden cache. Call it once and share
// the *Clip between streams, so its encodings are shared too.
func BuiltinMusic() *Clip {
	var (
		pad = musicTimbre{
			// Two slightly detuned fundamentals beat slowly against each other:
			// a warm, moving chord instead of a static organ.
			partials: [musicMaxPartials]musicPartial{{1, 1}, {1.003, 0.6}, {2, 0.2}, {3, 0.05}},
			attack:   0.3, decay: 1.2, sustain: 0.7, release: 0.7,
		}
		bass = musicTimbre{
			// The fundamental (65-130 Hz) is mostly lost in a phone earpiece;
			// the harmonics let the ear hear it anyway.
			partials: [musicMaxPartials]musicPartial{{1, 1}, {2, 0.7}, {3, 0.4}, {4, 0.2}},
			attack:   0.02, decay: 0.5, sustain: 0.5, release: 0.12,
		}
		pluck = musicTimbre{
			partials: [musicMaxPartials]musicPartial{{1, 1}, {2, 0.35}, {3, 0.12}},
			attack:   0.005, decay: 0.28, sustain: 0, release: 0.15,
		}
		lead = musicTimbre{
			partials: [musicMaxPartials]musicPartial{{1, 1}, {2, 0.15}, {3, 0.06}},
			attack:   0.06, decay: 0.4, sustain: 0.75, release: 0.25,
		}
	)
	chords := []musicChord{
		{bass: 48, pad: []int{55, 60, 64}, arp: [4]int{64, 67, 72, 76}},     // C
		{bass: 45, pad: []int{57, 60, 64}, arp: [4]int{64, 69, 72, 76}},     // Am
		{bass: 41, pad: []int{57, 60, 65}, arp: [4]int{65, 69, 72, 77}},     // F
		{bass: 43, pad: []int{55, 59, 62}, arp: [4]int{62, 67, 71, 74}},     // G
		{bass: 48, pad: []int{55, 60, 64}, arp: [4]int{64, 67, 72, 76}},     // C
		{bass: 45, pad: []int{57, 60, 64}, arp: [4]int{64, 69, 72, 76}},     // Am
		{bass: 38, pad: []int{57, 60, 62, 65}, arp: [4]int{62, 65, 69, 72}}, // Dm7
		{bass: 43, pad: []int{55, 59, 62, 65}, arp: [4]int{62, 65, 67, 71}}, // G7
	}
	melody := []struct {
		start, length float64 // beats
		midi          int
	}{
		{0, 1, 76}, {1, 1, 79}, {2, 2, 84}, // C: E G C
		{4, 1, 83}, {5, 1, 81}, {6, 2, 76}, // Am: B A E
		{8, 1, 77}, {9, 1, 81}, {10, 1, 84}, {11, 1, 81}, // F: F A C A
		{12, 2, 79}, {14, 2, 74}, // G: G D
		{16, 1, 76}, {17, 1, 79}, {18, 1, 84}, {19, 1, 88}, // C: E G C E
		{20, 1, 86}, {21, 1, 84}, {22, 2, 81}, // Am: D C A
		{24, 1.5, 77}, {25.5, 0.5, 76}, {26, 1, 74}, {27, 1, 77}, // Dm7: F E D F
		{28, 2, 79}, {30, 1, 77}, {31, 1, 74}, // G7: G F D, and on to E
	}
	arpPattern := [8]int{0, 1, 2, 3, 2, 1, 2, 1}

	// Two buses: the melody and arpeggio get the echo, the rest stays dry.
	dry := make([]float64, musicLength)
	wet := make([]float64, musicLength)
	for bar, ch := range chords {
		b := float64(bar * 4)
		for _, m := range ch.pad {
			renderMusicNote(dry, pad, musicNote{b, 4, m, 0.085})
		}
		renderMusicNote(dry, bass, musicNote{b, 1.9, ch.bass, 0.2})
		renderMusicNote(dry, bass, musicNote{b + 2, 0.9, ch.bass + 7, 0.16})
		renderMusicNote(dry, bass, musicNote{b + 3, 0.9, ch.bass, 0.16})
		for i, tone := range arpPattern {
			// Each pluck rings on over the next one, like a sustain pedal.
			renderMusicNote(wet, pluck, musicNote{b + float64(i)/2, 1, ch.arp[tone], 0.11})
		}
	}
	for _, n := range melody {
		// A breath between notes (92% legato), so repeated pitches articulate.
		renderMusicNote(wet, lead, musicNote{n.start, n.length * 0.92, n.midi, 0.2})
	}
	// A two-tap echo read around the loop, so the tail of the last bar echoes
	// into the first.
	for i, x := range wet {
		dry[i] += x + 0.3*wet[(i-musicEchoDelay+musicLength)%musicLength] +
			0.12*wet[(i-2*musicEchoDelay+musicLength)%musicLength]
	}
	return newClipOwning(musicName, masterMusic(dry))
}

// renderMusicNote adds note, played by timbre, into the loop buf. A note that
// rings past the end of the loop wraps to its start, which is what makes the
// loop seamless: the join is just another sample boundary of the piece.
func renderMusicNote(buf []float64, timbre musicTimbre, note musicNote) {
	const rate = float64(SampleRate)
	freq := 440 * math.Pow(2, float64(note.midi-69)/12)
	start := int(note.start * musicBeat)
	gate := int(note.length * musicBeat)
	attack := max(int(timbre.attack*rate), 1)
	release := max(int(timbre.release*rate), 1)
	decayStep := math.Exp(-1 / (timbre.decay * rate))

	// Each partial is a unit phasor rotated by a fixed step per sample: a few
	// multiplies instead of a math.Sin per sample, which keeps the whole piece
	// within tens of milliseconds. The phasors live in fixed arrays on the
	// stack rather than a heap slice, so the inner loop touches no shared
	// memory (three times faster under -race).
	var re, im, stepRe, stepIm, amplitude [musicMaxPartials]float64
	count := 0
	for _, p := range timbre.partials {
		f := freq * p.ratio
		if p.amplitude == 0 || f >= 0.45*rate { // unused, or at or past the Nyquist frequency where it would alias
			continue
		}
		w := 2 * math.Pi * f / rate
		re[count], stepRe[count], stepIm[count], amplitude[count] = 1, math.Cos(w), math.Sin(w), p.amplitude
		count++
	}

	excess := 1 - timbre.sustain // the part of the envelope still decaying
	var gateLevel float64
	at := start % len(buf)
	for i := range gate + release {
		var env float64
		switch {
		case i < gate && i < attack:
			env = float64(i) / float64(attack)
		case i < gate:
			env = timbre.sustain + excess
			excess *= decayStep
		default:
			if i == gate {
				gateLevel = timbre.sustain + excess
				if gate < attack {
					gateLevel = float64(gate) / float64(attack)
				}
			}
			env = gateLevel * float64(gate+release-i) / float64(release)
		}
		var sample float64
		for k := range count {
			sample += amplitude[k] * im[k]
			re[k], im[k] = re[k]*stepRe[k]-im[k]*stepIm[k], im[k]*stepRe[k]+re[k]*stepIm[k]
		}
		buf[at] += note.level * env * sample
		if at++; at == len(buf) {
			at = 0
		}
	}
}

// masterMusic scales the mix to the target loudness, turns the gain down
// smoothly around the few peaks that would pass the ceiling, and converts to
// 16-bit samples.
//
// The limiter rides the gain rather than bending the waveform: a gain that
// moves over tens of milliseconds adds no audible distortion, where clipping
// or a waveshaper splatters clicks across the spectrum.
func masterMusic(mix []float64) []int16 {
	var sumSquares float64
	for _, x := range mix {
		sumSquares += x * x
	}
	gain := dBFS(musicTargetRMS) / math.Sqrt(sumSquares/float64(len(mix)))
	ceiling := dBFS(musicCeiling)
	n := len(mix)
	// floor[i] is the lowest gain any sample within musicLimiterReach of i
	// needs. Loud samples are rare, so visiting only their neighbourhoods is
	// cheaper than a sliding minimum over the whole loop.
	floor := make([]float64, n)
	for i := range floor {
		floor[i] = 1
	}
	for i, x := range mix {
		if need := ceiling / math.Abs(x*gain); need < 1 {
			for j := i - musicLimiterReach; j <= i+musicLimiterReach; j++ {
				k := (j + n) % n // around the loop, so the join stays seamless
				floor[k] = min(floor[k], need)
			}
		}
	}
	// Averaging floor over the same reach smooths the gain; the average at i
	// only takes values of floor that already count sample i, so it never
	// exceeds what i needs and the ceiling holds exactly.
	const width = 2*musicLimiterReach + 1
	var window float64
	for j := -musicLimiterReach; j <= musicLimiterReach; j++ {
		window += floor[(j+n)%n]
	}
	pcm := make([]int16, n)
	for i, x := range mix {
		pcm[i] = saturateInt16(x * gain * window / width * math.MaxInt16)
		window += floor[(i+musicLimiterReach+1)%n] - floor[(i-musicLimiterReach+n)%n]
	}
	return pcm
}

// dBFS converts a level in decibels relative to full scale to a linear
// amplitude (full scale is 1).
func dBFS(db float64) float64 { return math.Pow(10, db/20) }
