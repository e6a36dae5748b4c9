package media

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrEmptyClip reports a clip that would have no samples: NewClip with empty
// PCM, or a WAV file whose data chunk holds no whole sample. A parked caller
// must hear something, and an empty loop cannot be paced.
var ErrEmptyClip = errors.New("no audio samples")

// MaxClipDuration is the longest clip Tone and ReadWAV produce. Ten minutes is
// far more than any hold loop needs, and it bounds what a hostile WAV header
// can make the reader allocate.
const MaxClipDuration = 10 * time.Minute

// Clip is a loop of 8 kHz mono 16-bit PCM: what a parked caller hears.
//
// A Clip is immutable once built and safe for concurrent use. Its G.711
// encodings are computed on the first call to Frames for each codec and then
// shared, so a thousand parked calls on one clip cost one encoding per codec.
type Clip struct {
	name string
	pcm  []int16
	ulaw lazyFrames
	alaw lazyFrames
}

// lazyFrames holds one codec's encoding, built at most once.
type lazyFrames struct {
	once   sync.Once
	frames *Frames
}

// NewClip returns a clip named name (for logs and errors) playing pcm, 8 kHz
// mono samples, in a loop. It copies pcm, so the caller may reuse the slice. It
// returns an error wrapping ErrEmptyClip if pcm is empty.
func NewClip(name string, pcm []int16) (*Clip, error) {
	if len(pcm) == 0 {
		return nil, fmt.Errorf("media: clip %q: %w", name, ErrEmptyClip)
	}
	return newClipOwning(name, append([]int16(nil), pcm...)), nil
}

// newClipOwning builds a clip that takes ownership of pcm without copying it:
// for the package's own generators and readers, which hand over a fresh slice.
func newClipOwning(name string, pcm []int16) *Clip {
	return &Clip{name: name, pcm: pcm[:len(pcm):len(pcm)]}
}

// Name returns the name the clip was built with.
func (c *Clip) Name() string { return c.name }

// PCM returns the clip's 8 kHz mono samples. The slice is shared by every
// user of the clip: callers must not modify it. Its capacity equals its length,
// so an append copies instead of writing into the clip.
func (c *Clip) PCM() []int16 { return c.pcm }

// Duration returns the length of one pass through the loop.
func (c *Clip) Duration() time.Duration {
	return time.Duration(len(c.pcm)) * time.Second / SampleRate
}

// Frames returns the clip encoded with codec as 20 ms payloads. The encoding is
// done on the first call per codec and the same *Frames is returned to every
// later caller; it must be treated as read-only. A trailing partial frame is
// padded with silence (see NewFrames).
//
// Frames returns nil if codec is neither PCMU nor PCMA (see Codec.Valid):
// codecs come from SDP negotiation, which only ever settles on those two.
func (c *Clip) Frames(codec Codec) *Frames {
	var lazy *lazyFrames
	switch codec {
	case PCMU:
		lazy = &c.ulaw
	case PCMA:
		lazy = &c.alaw
	default:
		return nil
	}
	lazy.once.Do(func() { lazy.frames = NewFrames(codec, c.pcm) })
	return lazy.frames
}
