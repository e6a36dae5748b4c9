package media

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewClip(t *testing.T) {
	tests := []struct {
		name         string
		pcm          []int16
		wantDuration time.Duration
		wantFrames   int
	}{
		{name: "one sample", pcm: []int16{7}, wantDuration: 125 * time.Microsecond, wantFrames: 1},
		{name: "one frame", pcm: make([]int16, SamplesPerFrame), wantDuration: FrameDuration, wantFrames: 1},
		{name: "frame and a bit", pcm: make([]int16, SamplesPerFrame+1), wantDuration: 20125 * time.Microsecond, wantFrames: 2},
		{name: "one second", pcm: make([]int16, SampleRate), wantDuration: time.Second, wantFrames: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := NewClip(tt.name, tt.pcm)
			require.NoError(t, err)
			require.Equal(t, tt.name, clip.Name())
			require.Equal(t, tt.pcm, clip.PCM())
			require.Equal(t, tt.wantDuration, clip.Duration())
			require.Equal(t, len(clip.PCM()), cap(clip.PCM()), "appending to PCM() must not write into the clip")
			for _, codec := range []Codec{PCMU, PCMA} {
				frames := clip.Frames(codec)
				require.Equal(t, codec, frames.Codec())
				require.Equal(t, tt.wantFrames, frames.Len())
			}
		})
	}
}

func TestNewClipCopiesInput(t *testing.T) {
	pcm := []int16{1, 2, 3}
	clip, err := NewClip("copy", pcm)
	require.NoError(t, err)
	pcm[0] = 99
	require.Equal(t, []int16{1, 2, 3}, clip.PCM())
}

func TestNewClipRejectsEmpty(t *testing.T) {
	for _, pcm := range [][]int16{nil, {}} {
		clip, err := NewClip("hold", pcm)
		require.Nil(t, clip)
		require.True(t, errors.Is(err, ErrEmptyClip), "%v", err)
		require.ErrorContains(t, err, `"hold"`)
	}
}

func TestClipFramesEncodesOncePerCodec(t *testing.T) {
	clip, err := NewClip("ramp", sineSamples(3*SamplesPerFrame, 440, 12000, SampleRate))
	require.NoError(t, err)
	tests := []struct {
		codec Codec
		valid bool
	}{
		{PCMU, true},
		{PCMA, true},
		{Codec(9), false},
		{Codec(18), false},
	}
	for _, tt := range tests {
		t.Run(tt.codec.String(), func(t *testing.T) {
			frames := clip.Frames(tt.codec)
			if !tt.valid {
				require.Nil(t, frames)
				return
			}
			require.Same(t, frames, clip.Frames(tt.codec), "the encoding is cached, not redone")
			want := NewFrames(tt.codec, clip.PCM())
			require.Equal(t, want.Len(), frames.Len())
			for i := range want.Len() {
				require.Equal(t, want.Payload(i), frames.Payload(i))
			}
		})
	}
	require.NotEqual(t, clip.Frames(PCMU).Payload(0), clip.Frames(PCMA).Payload(0), "each codec has its own encoding")
}

// Every stream of a parking lot asks for the frames at about the same moment;
// they must all get the one encoding, with no race.
func TestClipFramesConcurrentFirstUse(t *testing.T) {
	clip, err := NewClip("shared", sineSamples(SampleRate, 440, 12000, SampleRate))
	require.NoError(t, err)
	const callers = 16
	got := make([]*Frames, callers)
	var wg sync.WaitGroup
	for i := range got {
		wg.Go(func() { got[i] = clip.Frames([]Codec{PCMU, PCMA}[i%2]) })
	}
	wg.Wait()
	for i, f := range got {
		require.Same(t, got[i%2], f, "caller %d", i)
	}
	require.NotSame(t, got[0], got[1])
}

func BenchmarkClipFrames(b *testing.B) {
	music := BuiltinMusic()
	for _, codec := range []Codec{PCMU, PCMA} {
		b.Run(codec.String(), func(b *testing.B) {
			b.SetBytes(int64(len(music.PCM()) * 2))
			for b.Loop() {
				// A fresh clip each time, so the encoding is not cached.
				if newClipOwning(music.Name(), music.PCM()).Frames(codec) == nil {
					b.Fatal("no frames")
				}
			}
		})
	}
}
