package media

import (
	"fmt"
	"time"
)

// The media clock: G.711 at 8 kHz in 20 ms packets, as every SIP phone expects.
const (
	SampleRate      = 8000                  // samples per second
	FrameDuration   = 20 * time.Millisecond // one RTP packet
	SamplesPerFrame = SampleRate / 50       // 160 samples, and 160 bytes of G.711
)

// Codec is a G.711 codec named by its static RTP payload type (RFC 3551).
type Codec uint8

// The two codecs every SIP phone speaks.
const (
	PCMU Codec = 0 // G.711 µ-law
	PCMA Codec = 8 // G.711 A-law
)

// String returns the codec's SDP encoding name.
func (c Codec) String() string {
	switch c {
	case PCMU:
		return "PCMU"
	case PCMA:
		return "PCMA"
	}
	return fmt.Sprintf("Codec(%d)", uint8(c))
}

// PayloadType returns the codec's static RTP payload type.
func (c Codec) PayloadType() uint8 { return uint8(c) }

// Valid reports whether c is PCMU or PCMA.
func (c Codec) Valid() bool { return c == PCMU || c == PCMA }

// Encode writes the G.711 encoding of pcm into dst, one byte per sample, and
// returns the bytes written: min(len(dst), len(pcm)).
func (c Codec) Encode(dst []byte, pcm []int16) int {
	n := min(len(dst), len(pcm))
	if c == PCMA {
		for i := range n {
			dst[i] = alawEncode(pcm[i])
		}
		return n
	}
	for i := range n {
		dst[i] = ulawEncode(pcm[i])
	}
	return n
}

// Decode writes the linear PCM of the G.711 payload into dst and returns the
// samples written: min(len(dst), len(payload)).
func (c Codec) Decode(dst []int16, payload []byte) int {
	n := min(len(dst), len(payload))
	table := &ulawToLinear
	if c == PCMA {
		table = &alawToLinear
	}
	for i := range n {
		dst[i] = table[payload[i]]
	}
	return n
}

// Transcode rewrites a G.711 payload from one law to the other in place,
// through lookup tables (no linear detour per sample). It is the relay's
// PCMU<->PCMA path; from == to leaves payload as it is.
func Transcode(payload []byte, from, to Codec) {
	switch {
	case from == PCMU && to == PCMA:
		for i, b := range payload {
			payload[i] = ulawToAlaw[b]
		}
	case from == PCMA && to == PCMU:
		for i, b := range payload {
			payload[i] = alawToUlaw[b]
		}
	}
}

// ulawEncode is the ITU-T G.711 µ-law compressor (bias 0x84, clip 32635).
func ulawEncode(s int16) byte {
	const bias, clip = 0x84, 32635
	x := int32(s)
	sign := byte(0)
	if x < 0 {
		x = -x
		sign = 0x80
	}
	if x > clip {
		x = clip
	}
	x += bias
	exp := byte(7)
	for mask := int32(0x4000); x&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mantissa := byte(x>>(exp+3)) & 0x0f
	return ^(sign | exp<<4 | mantissa)
}

func ulawDecode(b byte) int16 {
	b = ^b
	sign := b & 0x80
	exp := (b >> 4) & 0x07
	mantissa := int32(b & 0x0f)
	x := ((mantissa << 3) + 0x84) << exp
	x -= 0x84
	if sign != 0 {
		return int16(-x)
	}
	return int16(x)
}

// alawEncode is the ITU-T G.711 A-law compressor (even bits inverted with 0x55).
func alawEncode(s int16) byte {
	x := int32(s)
	sign := byte(0x80)
	if x < 0 {
		x = -x - 1
		sign = 0
	}
	if x > 32767 {
		x = 32767
	}
	var out byte
	if x < 256 {
		out = byte(x >> 4)
	} else {
		exp := byte(7)
		for mask := int32(0x4000); x&mask == 0; mask >>= 1 {
			exp--
		}
		out = exp<<4 | byte(x>>(exp+3))&0x0f
	}
	return (out | sign) ^ 0x55
}

func alawDecode(b byte) int16 {
	b ^= 0x55
	sign := b & 0x80
	exp := (b >> 4) & 0x07
	mantissa := int32(b & 0x0f)
	var x int32
	if exp == 0 {
		x = mantissa<<4 + 8
	} else {
		x = (mantissa<<4 + 0x108) << (exp - 1)
	}
	if sign == 0 {
		return int16(-x)
	}
	return int16(x)
}

// Lookup tables, computed once at start-up and never written again.
var (
	ulawToLinear = decodeTable(ulawDecode)
	alawToLinear = decodeTable(alawDecode)
	ulawToAlaw   = transcodeTable(ulawDecode, alawEncode)
	alawToUlaw   = transcodeTable(alawDecode, ulawEncode)
)

func decodeTable(decode func(byte) int16) (t [256]int16) {
	for i := range t {
		t[i] = decode(byte(i))
	}
	return t
}

func transcodeTable(decode func(byte) int16, encode func(int16) byte) (t [256]byte) {
	for i := range t {
		t[i] = encode(decode(byte(i)))
	}
	return t
}

// Frames is audio encoded for one codec as 20 ms payloads of 160 bytes, played
// in a loop. It is built once per clip and codec and shared read-only by every
// stream, so a thousand parked calls cost one encoding, not a thousand.
type Frames struct {
	codec    Codec
	payloads [][]byte
}

// NewFrames encodes pcm (8 kHz mono) with codec into 20 ms frames. A trailing
// partial frame is padded with silence so the loop keeps a steady 20 ms beat.
func NewFrames(codec Codec, pcm []int16) *Frames {
	n := (len(pcm) + SamplesPerFrame - 1) / SamplesPerFrame
	if n == 0 {
		n = 1
	}
	buf := make([]byte, n*SamplesPerFrame)
	padded := make([]int16, n*SamplesPerFrame)
	copy(padded, pcm)
	codec.Encode(buf, padded)
	f := &Frames{codec: codec, payloads: make([][]byte, n)}
	for i := range f.payloads {
		f.payloads[i] = buf[i*SamplesPerFrame : (i+1)*SamplesPerFrame : (i+1)*SamplesPerFrame]
	}
	return f
}

// Codec returns the codec the frames are encoded with.
func (f *Frames) Codec() Codec { return f.codec }

// Len returns the number of 20 ms frames in one loop.
func (f *Frames) Len() int { return len(f.payloads) }

// Payload returns frame i of the loop (i modulo Len). The slice is shared:
// callers must not modify it.
func (f *Frames) Payload(i int) []byte { return f.payloads[i%len(f.payloads)] }
