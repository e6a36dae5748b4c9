package media_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/callpark/callpark/media"
)

// The built-in music is what a parked caller hears by default. Build it once
// and share it: every stream then plays the same encoded frames.
func ExampleBuiltinMusic() {
	music := media.BuiltinMusic()
	ulaw := music.Frames(media.PCMU)
	fmt.Println(music.Name(), music.Duration())
	fmt.Println(ulaw.Len(), "frames of", len(ulaw.Payload(0)), "bytes")
	// Output:
	// builtin 25.6s
	// 1280 frames of 160 bytes
}

// A steady tone, for instance a comfort tone instead of music.
func ExampleTone() {
	tone, err := media.Tone("comfort tone", 425, time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tone.Name(), tone.Duration(), tone.Frames(media.PCMA).Len(), "frames")

	_, err = media.Tone("whistle", 5000, time.Second)
	fmt.Println(errors.Is(err, media.ErrInvalidTone), err)
	// Output:
	// comfort tone 1s 50 frames
	// true media: tone "whistle": frequency 5000 Hz outside (0, 4000): invalid tone
}

// Custom hold music from a WAV file: 16 kHz stereo here, resampled to 8 kHz
// mono at load time.
func ExampleReadWAV() {
	f, err := os.Open("testdata/a440-16k-stereo.wav")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	clip, err := media.ReadWAV("a440.wav", f)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(clip.Name(), clip.Duration(), len(clip.PCM()), "samples at 8 kHz")

	// A format it cannot play is refused up front, with the reason.
	_, err = media.ReadWAV("float.wav", strings.NewReader("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00"+
		"\x03\x00\x01\x00\x80\xbb\x00\x00\x00\xee\x02\x00\x04\x00\x20\x00"))
	fmt.Println(errors.Is(err, media.ErrUnsupportedFormat), err)
	// Output:
	// a440.wav 100ms 800 samples at 8 kHz
	// true media: WAV "float.wav": IEEE float samples (format 3), want 16-bit PCM: unsupported audio format
}
