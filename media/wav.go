package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Errors of ReadWAV and LoadWAV. The returned errors wrap one of these (or
// ErrEmptyClip) and say which file and which field is at fault.
var (
	// ErrNotWAV reports input that is not a well-formed RIFF/WAVE file: wrong
	// magic, a missing or short fmt chunk, no data chunk.
	ErrNotWAV = errors.New("not a WAV file")
	// ErrUnsupportedFormat reports a well-formed WAV file in a format this
	// package does not play: not 16-bit PCM, more than two channels, or a sample
	// rate outside [MinSourceRate, MaxSourceRate].
	ErrUnsupportedFormat = errors.New("unsupported audio format")
	// ErrClipTooLong reports audio longer than MaxClipDuration.
	ErrClipTooLong = errors.New("audio too long")
)

// WAV format tags (the wFormatTag field of the fmt chunk).
const (
	wavFormatPCM        = 0x0001
	wavFormatFloat      = 0x0003
	wavFormatALaw       = 0x0006
	wavFormatULaw       = 0x0007
	wavFormatExtensible = 0xfffe
)

// wavSubtypeSuffix is the tail shared by the KSDATAFORMAT_SUBTYPE GUIDs of
// WAVE_FORMAT_EXTENSIBLE; the first two bytes of the GUID carry the format tag.
var wavSubtypeSuffix = [14]byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71}

// wavReadBlock is how much sample data is read at a time: a multiple of every
// sample frame size we accept (2 and 4 bytes), so frames never straddle reads.
const wavReadBlock = 32 << 10

// wavFormat is what the fmt chunk says, once validated.
type wavFormat struct {
	channels int
	rate     int
}

// ReadWAV reads a RIFF/WAVE file from r and returns it as a clip named name,
// resampled to 8 kHz mono.
//
// Accepted: 16-bit PCM (format 1, or WAVE_FORMAT_EXTENSIBLE with the PCM
// subformat), mono or stereo (mixed down to mono), at any sample rate from
// MinSourceRate to MaxSourceRate (8 to 48 kHz: 8000, 16000, 44100 and 48000,
// and also 11025, 22050, 32000 and the like). Chunks other than fmt and data
// (LIST, fact, cue...) are skipped, pad bytes included.
//
// A data chunk that claims more bytes than the file holds is read up to the
// end of the file: writers that stream often leave the size wrong (0xFFFFFFFF,
// or the size of a recording cut short), and the audio that is there is
// still good. A trailing partial sample frame is dropped.
//
// Errors wrap ErrNotWAV (not a WAV file, or a broken one), ErrUnsupportedFormat
// (8/24/32-bit, float, G.711, ADPCM, more than two channels, a rate out of
// range), ErrEmptyClip (no whole sample) or ErrClipTooLong (more than
// MaxClipDuration); I/O errors other than an early end of input come back as
// they are, wrapped. Beyond a fixed 160 KB of buffers, memory grows with the
// audio actually read, never with what a header claims.
func ReadWAV(name string, r io.Reader) (*Clip, error) {
	br := bufio.NewReader(r)
	var riff [12]byte
	if n, err := io.ReadFull(br, riff[:]); err != nil {
		if inputEnded(err) {
			return nil, wavError(name, ErrNotWAV, "%d bytes, too short for a RIFF header", n)
		}
		return nil, fmt.Errorf("media: WAV %q: %w", name, err)
	}
	if string(riff[0:4]) != "RIFF" {
		return nil, wavError(name, ErrNotWAV, "starts with %q, want \"RIFF\"", riff[0:4])
	}
	if string(riff[8:12]) != "WAVE" {
		return nil, wavError(name, ErrNotWAV, "RIFF form type %q, want \"WAVE\"", riff[8:12])
	}

	var format *wavFormat
	for {
		var header [8]byte
		if _, err := io.ReadFull(br, header[:]); err != nil {
			if !inputEnded(err) {
				return nil, fmt.Errorf("media: WAV %q: %w", name, err)
			}
			if format == nil {
				return nil, wavError(name, ErrNotWAV, "no fmt chunk")
			}
			return nil, wavError(name, ErrNotWAV, "no data chunk")
		}
		id, size := string(header[0:4]), binary.LittleEndian.Uint32(header[4:8])
		switch {
		case id == "fmt " && format == nil:
			f, err := readWAVFormat(name, br, size)
			if err != nil {
				return nil, err
			}
			format = f
		case id == "data":
			if format == nil {
				return nil, wavError(name, ErrNotWAV, "data chunk before fmt chunk")
			}
			return readWAVData(name, br, size, format)
		default:
			// RIFF pads every chunk to an even length; the pad byte is not
			// counted in the size.
			if err := skipWAV(name, br, int64(size)+int64(size&1), id); err != nil {
				return nil, err
			}
		}
	}
}

// LoadWAV reads the WAV file at path (see ReadWAV); the clip is named path.
func LoadWAV(path string) (*Clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: load WAV: %w", err)
	}
	defer f.Close() // read-only: a close error cannot lose data
	return ReadWAV(path, f)
}

// readWAVFormat parses and validates a fmt chunk of size bytes.
func readWAVFormat(name string, r io.Reader, size uint32) (*wavFormat, error) {
	if size < 16 {
		return nil, wavError(name, ErrNotWAV, "fmt chunk of %d bytes, want at least 16", size)
	}
	// Only the first 40 bytes (the extensible layout) mean anything to us; the
	// rest is skipped, so a huge size costs no memory.
	var buf [40]byte
	head := buf[:min(size, uint32(len(buf)))]
	if _, err := io.ReadFull(r, head); err != nil {
		if inputEnded(err) {
			return nil, wavError(name, ErrNotWAV, "file ends inside the fmt chunk")
		}
		return nil, fmt.Errorf("media: WAV %q: %w", name, err)
	}
	if err := skipWAV(name, r, int64(size)-int64(len(head))+int64(size&1), "fmt "); err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	tag := le.Uint16(head[0:2])
	channels := int(le.Uint16(head[2:4]))
	rate := le.Uint32(head[4:8])
	bits := le.Uint16(head[14:16])
	if tag == wavFormatExtensible {
		if len(head) < 40 {
			return nil, wavError(name, ErrNotWAV, "WAVE_FORMAT_EXTENSIBLE fmt chunk of %d bytes, want 40", size)
		}
		if !bytes.Equal(head[26:40], wavSubtypeSuffix[:]) {
			return nil, wavError(name, ErrUnsupportedFormat, "WAVE_FORMAT_EXTENSIBLE subformat GUID % x", head[24:40])
		}
		tag = le.Uint16(head[24:26])
	}
	switch tag {
	case wavFormatPCM:
	case wavFormatFloat:
		return nil, wavError(name, ErrUnsupportedFormat, "IEEE float samples (format 3), want 16-bit PCM")
	case wavFormatALaw:
		return nil, wavError(name, ErrUnsupportedFormat, "A-law samples (format 6), want 16-bit PCM")
	case wavFormatULaw:
		return nil, wavError(name, ErrUnsupportedFormat, "µ-law samples (format 7), want 16-bit PCM")
	default:
		return nil, wavError(name, ErrUnsupportedFormat, "format tag 0x%04x, want PCM (1)", tag)
	}
	if bits != 16 {
		return nil, wavError(name, ErrUnsupportedFormat, "%d bits per sample, want 16", bits)
	}
	if channels != 1 && channels != 2 {
		return nil, wavError(name, ErrUnsupportedFormat, "%d channels, want 1 or 2", channels)
	}
	if rate < MinSourceRate || rate > MaxSourceRate {
		return nil, wavError(name, ErrUnsupportedFormat, "sample rate %d Hz, want %d to %d", rate, MinSourceRate, MaxSourceRate)
	}
	return &wavFormat{channels: channels, rate: int(rate)}, nil
}

// readWAVData decodes a data chunk that claims size bytes, mixes it to mono
// and resamples it to 8 kHz.
func readWAVData(name string, r io.Reader, size uint32, f *wavFormat) (*Clip, error) {
	frameBytes := 2 * f.channels
	maxFrames := int(MaxClipDuration/time.Second) * f.rate
	// Trust the header for a first guess only: growing by append ties memory to
	// the bytes that really arrive.
	mono := make([]int16, 0, min(int64(size)/int64(frameBytes), 1<<16))
	buf := make([]byte, wavReadBlock)
	for remaining := int64(size); remaining > 0; {
		got, err := io.ReadFull(r, buf[:min(int64(len(buf)), remaining)])
		remaining -= int64(got)
		block := buf[:got-got%frameBytes]
		if f.channels == 1 {
			for i := 0; i < len(block); i += 2 {
				mono = append(mono, int16(binary.LittleEndian.Uint16(block[i:])))
			}
		} else {
			for i := 0; i < len(block); i += 4 {
				left := int32(int16(binary.LittleEndian.Uint16(block[i:])))
				right := int32(int16(binary.LittleEndian.Uint16(block[i+2:])))
				mono = append(mono, int16((left+right)>>1))
			}
		}
		if len(mono) > maxFrames {
			return nil, wavError(name, ErrClipTooLong, "more than %v of audio at %d Hz", MaxClipDuration, f.rate)
		}
		if err != nil {
			if inputEnded(err) {
				break // the data chunk claims more than the file holds: keep what is there
			}
			return nil, fmt.Errorf("media: WAV %q: %w", name, err)
		}
	}
	if len(mono) == 0 {
		return nil, wavError(name, ErrEmptyClip, "data chunk of %d bytes holds no whole %d-byte sample frame", size, frameBytes)
	}
	pcm, err := Resample(mono, f.rate)
	if err != nil {
		return nil, fmt.Errorf("media: WAV %q: %w", name, err)
	}
	if len(pcm) == 0 {
		return nil, wavError(name, ErrEmptyClip, "%d samples at %d Hz make less than one sample at %d Hz", len(mono), f.rate, SampleRate)
	}
	return newClipOwning(name, pcm), nil
}

// skipWAV discards n bytes of the chunk id.
func skipWAV(name string, r io.Reader, n int64, id string) error {
	if _, err := io.CopyN(io.Discard, r, n); err != nil {
		if inputEnded(err) {
			return wavError(name, ErrNotWAV, "file ends inside the %q chunk", id)
		}
		return fmt.Errorf("media: WAV %q: %w", name, err)
	}
	return nil
}

// inputEnded reports an input that ended early, whether between reads or in the
// middle of one.
func inputEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// wavError wraps sentinel with the file name and what is wrong with it.
func wavError(name string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("media: WAV %q: %s: %w", name, fmt.Sprintf(format, args...), sentinel)
}
