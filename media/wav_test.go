package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

// wavChunk returns a RIFF chunk claiming size bytes (-1: the body's length),
// with the pad byte RIFF adds after an odd body.
func wavChunk(id string, size int64, body []byte) []byte {
	if size < 0 {
		size = int64(len(body))
	}
	out := binary.LittleEndian.AppendUint32([]byte(id), uint32(size))
	out = append(out, body...)
	if len(body)%2 == 1 {
		out = append(out, 0)
	}
	return out
}

// wavFile returns a RIFF/WAVE file holding chunks.
func wavFile(chunks ...[]byte) []byte {
	body := bytes.Join(append([][]byte{[]byte("WAVE")}, chunks...), nil)
	return append(binary.LittleEndian.AppendUint32([]byte("RIFF"), uint32(len(body))), body...)
}

// wavFmtBody returns the 16 bytes of a plain fmt chunk.
func wavFmtBody(tag, channels uint16, rate uint32, bits uint16) []byte {
	le := binary.LittleEndian
	b := le.AppendUint16(nil, tag)
	b = le.AppendUint16(b, channels)
	b = le.AppendUint32(b, rate)
	b = le.AppendUint32(b, rate*uint32(channels)*uint32(bits)/8) // byte rate
	b = le.AppendUint16(b, channels*bits/8)                      // block align
	return le.AppendUint16(b, bits)
}

// wavFmt returns a plain fmt chunk.
func wavFmt(tag, channels uint16, rate uint32, bits uint16) []byte {
	return wavChunk("fmt ", -1, wavFmtBody(tag, channels, rate, bits))
}

// wavFmtExtensible returns a WAVE_FORMAT_EXTENSIBLE fmt chunk whose subformat
// GUID starts with subformat (1 for PCM, 3 for float).
func wavFmtExtensible(channels uint16, rate uint32, bits, validBits, subformat uint16) []byte {
	le := binary.LittleEndian
	b := wavFmtBody(wavFormatExtensible, channels, rate, bits)
	b = le.AppendUint16(b, 22) // cbSize
	b = le.AppendUint16(b, validBits)
	b = le.AppendUint32(b, 3) // channel mask: front left and right
	b = le.AppendUint16(b, subformat)
	return wavChunk("fmt ", -1, append(b, wavSubtypeSuffix[:]...))
}

// wavSamples returns the little-endian bytes of samples.
func wavSamples(samples ...int16) []byte {
	var b []byte
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

// wavData returns a data chunk of samples.
func wavData(samples ...int16) []byte { return wavChunk("data", -1, wavSamples(samples...)) }

func TestReadWAVAccepts(t *testing.T) {
	mono := []int16{0, 1000, -1000, math.MaxInt16, math.MinInt16, 5}
	// Left/right pairs and their mono mix: the mean, rounded down.
	stereo := []int16{1000, 3000, math.MinInt16, math.MinInt16, math.MaxInt16, math.MinInt16, -1, 0, math.MaxInt16, math.MaxInt16}
	stereoMix := []int16{2000, math.MinInt16, -1, -1, math.MaxInt16}
	fmt8k := wavFmt(wavFormatPCM, 1, 8000, 16)
	withRIFFSize := func(file []byte, size uint32) []byte {
		binary.LittleEndian.PutUint32(file[4:8], size)
		return file
	}
	tests := []struct {
		name    string
		file    []byte
		wantPCM []int16 // exact samples, for 8 kHz input
		wantLen int     // sample count, for resampled input
	}{
		{name: "mono 8 kHz", file: wavFile(fmt8k, wavData(mono...)), wantPCM: mono},
		{name: "stereo 8 kHz mixed to mono", file: wavFile(wavFmt(wavFormatPCM, 2, 8000, 16), wavData(stereo...)), wantPCM: stereoMix},
		{name: "extensible PCM stereo", file: wavFile(wavFmtExtensible(2, 8000, 16, 16, wavFormatPCM), wavData(stereo...)), wantPCM: stereoMix},
		{name: "extensible 12 valid bits in 16", file: wavFile(wavFmtExtensible(1, 8000, 16, 12, wavFormatPCM), wavData(mono...)), wantPCM: mono},
		{name: "fmt with cbSize 0", file: wavFile(wavChunk("fmt ", -1, append(wavFmtBody(1, 1, 8000, 16), 0, 0)), wavData(mono...)), wantPCM: mono},
		{name: "fmt longer than 40 bytes", file: wavFile(wavChunk("fmt ", -1, append(wavFmtBody(1, 1, 8000, 16), make([]byte, 35)...)), wavData(mono...)), wantPCM: mono},
		{name: "odd LIST before fmt, with pad byte", file: wavFile(wavChunk("LIST", -1, []byte("abc")), fmt8k, wavData(mono...)), wantPCM: mono},
		{name: "chunks between fmt and data", file: wavFile(fmt8k, wavChunk("fact", -1, []byte{6, 0, 0, 0}), wavChunk("junk", -1, []byte("x")), wavData(mono...)), wantPCM: mono},
		{name: "empty unknown chunk", file: wavFile(fmt8k, wavChunk("cue ", -1, nil), wavData(mono...)), wantPCM: mono},
		{name: "second fmt ignored", file: wavFile(fmt8k, wavFmt(wavFormatFloat, 6, 96000, 32), wavData(mono...)), wantPCM: mono},
		{name: "chunks after data ignored", file: append(wavFile(fmt8k, wavData(mono...)), "LIST\xff\xff"...), wantPCM: mono},
		{name: "wrong RIFF size", file: withRIFFSize(wavFile(fmt8k, wavData(mono...)), 0), wantPCM: mono},
		{name: "data size beyond the file", file: wavFile(fmt8k, wavChunk("data", 1000, wavSamples(mono...))), wantPCM: mono},
		{name: "streamed data size 0xFFFFFFFF", file: wavFile(fmt8k, wavChunk("data", 0xffffffff, wavSamples(mono...))), wantPCM: mono},
		{name: "odd trailing byte dropped", file: wavFile(fmt8k, wavChunk("data", -1, []byte{1, 0, 2, 0, 3})), wantPCM: []int16{1, 2}},
		{name: "partial stereo frame dropped", file: wavFile(wavFmt(1, 2, 8000, 16), wavChunk("data", -1, wavSamples(10, 20, 30))), wantPCM: []int16{15}},
		{name: "16 kHz mono", file: wavFile(wavFmt(1, 1, 16000, 16), wavData(make([]int16, 1600)...)), wantLen: 800},
		{name: "44.1 kHz stereo", file: wavFile(wavFmt(1, 2, 44100, 16), wavData(make([]int16, 2*4410)...)), wantLen: 800},
		{name: "48 kHz mono", file: wavFile(wavFmt(1, 1, 48000, 16), wavData(make([]int16, 480)...)), wantLen: 80},
		{name: "extensible 48 kHz stereo", file: wavFile(wavFmtExtensible(2, 48000, 16, 16, 1), wavData(make([]int16, 2*480)...)), wantLen: 80},
		{name: "11025 Hz", file: wavFile(wavFmt(1, 1, 11025, 16), wavData(make([]int16, 1103)...)), wantLen: 800},
		{name: "32 kHz", file: wavFile(wavFmt(1, 1, 32000, 16), wavData(make([]int16, 3200)...)), wantLen: 800},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := ReadWAV(tt.name, bytes.NewReader(tt.file))
			require.NoError(t, err)
			require.Equal(t, tt.name, clip.Name())
			if tt.wantPCM != nil {
				require.Equal(t, tt.wantPCM, clip.PCM())
			} else {
				require.Len(t, clip.PCM(), tt.wantLen)
			}
		})
	}
}

func TestReadWAVRejects(t *testing.T) {
	fmt8k := wavFmt(wavFormatPCM, 1, 8000, 16)
	data := wavData(1, 2, 3, 4)
	extensibleGUID := wavFmtExtensible(1, 8000, 16, 16, wavFormatPCM)
	extensibleGUID[8+24+5] ^= 0xff // a GUID that is not a KSDATAFORMAT_SUBTYPE
	tests := []struct {
		name    string
		file    []byte
		want    error
		message string // part of what the error must say
	}{
		{name: "empty", file: nil, want: ErrNotWAV, message: "0 bytes"},
		{name: "short", file: []byte("RIFF\x04\x00"), want: ErrNotWAV, message: "6 bytes"},
		{name: "big-endian RIFX", file: append([]byte("RIFX"), wavFile(fmt8k, data)[4:]...), want: ErrNotWAV, message: `"RIFX"`},
		{name: "an MP3", file: []byte("ID3\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), want: ErrNotWAV, message: `"ID3\x04"`},
		{name: "AVI", file: append([]byte("RIFF\x04\x00\x00\x00AVI "), fmt8k...), want: ErrNotWAV, message: `"AVI "`},
		{name: "no chunks", file: wavFile(), want: ErrNotWAV, message: "no fmt chunk"},
		{name: "fmt only", file: wavFile(fmt8k), want: ErrNotWAV, message: "no data chunk"},
		{name: "data before fmt", file: wavFile(data, fmt8k), want: ErrNotWAV, message: "data chunk before fmt chunk"},
		{name: "fmt too short", file: wavFile(wavChunk("fmt ", -1, make([]byte, 14)), data), want: ErrNotWAV, message: "fmt chunk of 14 bytes"},
		{name: "file ends in fmt", file: wavFile(fmt8k)[:12+8+10], want: ErrNotWAV, message: "inside the fmt chunk"},
		{name: "file ends in chunk header", file: wavFile(fmt8k)[:12+8+16+3], want: ErrNotWAV, message: "no data chunk"},
		{name: "LIST longer than the file", file: wavFile(fmt8k, wavChunk("LIST", 1<<30, []byte("INFO"))), want: ErrNotWAV, message: `inside the "LIST" chunk`},
		{name: "pad byte missing before EOF", file: wavFile(fmt8k, wavChunk("junk", -1, []byte("x")))[:12+24+9], want: ErrNotWAV, message: `inside the "junk" chunk`},
		{name: "short extensible fmt", file: wavFile(wavChunk("fmt ", -1, append(wavFmtBody(wavFormatExtensible, 1, 8000, 16), 0, 0)), data), want: ErrNotWAV, message: "WAVE_FORMAT_EXTENSIBLE fmt chunk of 18 bytes"},

		{name: "8-bit", file: wavFile(wavFmt(wavFormatPCM, 1, 8000, 8), data), want: ErrUnsupportedFormat, message: "8 bits per sample"},
		{name: "24-bit", file: wavFile(wavFmt(wavFormatPCM, 2, 48000, 24), data), want: ErrUnsupportedFormat, message: "24 bits per sample"},
		{name: "32-bit", file: wavFile(wavFmt(wavFormatPCM, 1, 44100, 32), data), want: ErrUnsupportedFormat, message: "32 bits per sample"},
		{name: "extensible 24-bit", file: wavFile(wavFmtExtensible(2, 48000, 24, 24, wavFormatPCM), data), want: ErrUnsupportedFormat, message: "24 bits per sample"},
		{name: "float", file: wavFile(wavFmt(wavFormatFloat, 1, 48000, 32), data), want: ErrUnsupportedFormat, message: "IEEE float"},
		{name: "extensible float", file: wavFile(wavFmtExtensible(2, 48000, 32, 32, wavFormatFloat), data), want: ErrUnsupportedFormat, message: "IEEE float"},
		{name: "extensible unknown GUID", file: wavFile(extensibleGUID, data), want: ErrUnsupportedFormat, message: "subformat GUID"},
		{name: "A-law", file: wavFile(wavFmt(wavFormatALaw, 1, 8000, 8), data), want: ErrUnsupportedFormat, message: "A-law"},
		{name: "µ-law", file: wavFile(wavFmt(wavFormatULaw, 1, 8000, 8), data), want: ErrUnsupportedFormat, message: "µ-law"},
		{name: "ADPCM", file: wavFile(wavFmt(2, 1, 8000, 4), data), want: ErrUnsupportedFormat, message: "format tag 0x0002"},
		{name: "zero channels", file: wavFile(wavFmt(wavFormatPCM, 0, 8000, 16), data), want: ErrUnsupportedFormat, message: "0 channels"},
		{name: "5.1", file: wavFile(wavFmt(wavFormatPCM, 6, 48000, 16), data), want: ErrUnsupportedFormat, message: "6 channels"},
		{name: "zero rate", file: wavFile(wavFmt(wavFormatPCM, 1, 0, 16), data), want: ErrUnsupportedFormat, message: "sample rate 0 Hz"},
		{name: "6 kHz", file: wavFile(wavFmt(wavFormatPCM, 1, 6000, 16), data), want: ErrUnsupportedFormat, message: "sample rate 6000 Hz"},
		{name: "96 kHz", file: wavFile(wavFmt(wavFormatPCM, 2, 96000, 16), data), want: ErrUnsupportedFormat, message: "sample rate 96000 Hz"},

		{name: "empty data", file: wavFile(fmt8k, wavData()), want: ErrEmptyClip, message: "data chunk of 0 bytes"},
		{name: "one byte of data", file: wavFile(fmt8k, wavChunk("data", -1, []byte{1})), want: ErrEmptyClip, message: "no whole 2-byte sample frame"},
		{name: "half a stereo frame", file: wavFile(wavFmt(1, 2, 8000, 16), wavChunk("data", -1, []byte{1, 2, 3})), want: ErrEmptyClip, message: "no whole 4-byte sample frame"},
		{name: "data size beyond an empty file", file: wavFile(fmt8k, wavChunk("data", 4096, nil)), want: ErrEmptyClip, message: "data chunk of 4096 bytes"},
		{name: "less than one 8 kHz sample", file: wavFile(wavFmt(1, 1, 48000, 16), wavData(1, 2)), want: ErrEmptyClip, message: "2 samples at 48000 Hz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clip, err := ReadWAV("hold.wav", bytes.NewReader(tt.file))
			require.Nil(t, clip)
			require.Truef(t, errors.Is(err, tt.want), "got %v, want %v", err, tt.want)
			require.ErrorContains(t, err, tt.message)
			require.ErrorContains(t, err, `"hold.wav"`)
		})
	}
}

// endlessSilence is an unending stream of zero bytes that counts what is read.
type endlessSilence struct{ read int64 }

func (r *endlessSilence) Read(p []byte) (int, error) {
	clear(p)
	r.read += int64(len(p))
	return len(p), nil
}

// A streamed WAV can claim 4 GB and keep coming: the reader stops soon after
// MaxClipDuration, and takes up to exactly that much.
func TestReadWAVLengthLimit(t *testing.T) {
	maxBytes := int64(MaxClipDuration.Seconds()) * SampleRate * 2
	header := wavFile(wavFmt(wavFormatPCM, 1, SampleRate, 16), []byte("data\xff\xff\xff\xff"))
	tests := []struct {
		name     string
		dataSize int64 // -1: endless
		wantErr  error
	}{
		{name: "exactly the limit", dataSize: maxBytes},
		{name: "one sample over", dataSize: maxBytes + 2, wantErr: ErrClipTooLong},
		{name: "endless", dataSize: -1, wantErr: ErrClipTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			source := &endlessSilence{}
			var data io.Reader = source
			if tt.dataSize >= 0 {
				data = io.LimitReader(source, tt.dataSize)
			}
			clip, err := ReadWAV("stream.wav", io.MultiReader(bytes.NewReader(header), data))
			require.LessOrEqual(t, source.read, maxBytes+2*wavReadBlock, "read on past the limit")
			if tt.wantErr != nil {
				require.True(t, errors.Is(err, tt.wantErr), "%v", err)
				require.ErrorContains(t, err, "10m0s")
				return
			}
			require.NoError(t, err)
			require.Equal(t, MaxClipDuration, clip.Duration())
		})
	}
}

// A header may claim gigabytes; memory follows the bytes that arrive.
func TestReadWAVAllocatesForActualData(t *testing.T) {
	tests := []struct {
		name string
		file []byte
	}{
		{name: "4 GB data chunk", file: wavFile(wavFmt(wavFormatPCM, 2, 48000, 16), wavChunk("data", 0xfffffffe, wavSamples(1, 2, 3, 4)))},
		{name: "4 GB fmt chunk", file: wavFile(wavChunk("fmt ", 0xfffffffe, wavFmtBody(wavFormatPCM, 1, 8000, 16)))},
		{name: "4 GB LIST chunk", file: wavFile(wavChunk("LIST", 0xfffffffe, []byte("INFO")))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, _ = ReadWAV("claims.wav", bytes.NewReader(tt.file))
			runtime.ReadMemStats(&after)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2<<20), "bytes allocated")
		})
	}
}

// failAfter serves data, then fails with err instead of io.EOF.
func failAfter(data []byte, err error) io.Reader {
	return io.MultiReader(bytes.NewReader(data), iotest.ErrReader(err))
}

// A failing disk is not a malformed file: the I/O error comes back as it is.
func TestReadWAVPassesReadErrors(t *testing.T) {
	diskError := errors.New("input/output error")
	file := wavFile(wavChunk("LIST", -1, []byte("INFO")), wavFmt(wavFormatPCM, 1, 16000, 16), wavData(make([]int16, 100)...))
	for _, cut := range []int{0, 6, 12, 16, 22, 30, 40, 50, 100} {
		clip, err := ReadWAV("disk.wav", failAfter(file[:cut], diskError))
		require.Nil(t, clip)
		require.Truef(t, errors.Is(err, diskError), "cut at %d: %v", cut, err)
		require.Falsef(t, errors.Is(err, ErrNotWAV), "cut at %d: %v", cut, err)
		require.ErrorContains(t, err, `"disk.wav"`)
	}
}

// Resampling at load keeps the pitch and the level of the music.
func TestReadWAVResamplesTone(t *testing.T) {
	for _, rate := range []uint32{16000, 22050, 44100, 48000} {
		t.Run(strconv.Itoa(int(rate)), func(t *testing.T) {
			left := sineSamples(int(rate/4), 1000, 12000, int(rate))
			stereo := make([]int16, 0, 2*len(left))
			for _, s := range left {
				stereo = append(stereo, s, s/3) // the mix is 2/3 of the left channel
			}
			clip, err := ReadWAV("tone.wav", bytes.NewReader(wavFile(wavFmt(wavFormatPCM, 2, rate, 16), wavData(stereo...))))
			require.NoError(t, err)
			require.Len(t, clip.PCM(), SampleRate/4)
			middle := clip.PCM()[100 : SampleRate/4-100]
			require.InDelta(t, 0, decibels(measureAmplitude(middle, 1000, SampleRate)/8000), 1, "rate %d", rate)
		})
	}
}

func TestLoadWAV(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.wav")
	require.NoError(t, os.WriteFile(good, wavFile(wavFmt(wavFormatPCM, 1, 8000, 16), wavData(1, 2, 3)), 0o600))
	bad := filepath.Join(dir, "bad.wav")
	require.NoError(t, os.WriteFile(bad, []byte("not a wav file at all"), 0o600))

	clip, err := LoadWAV(good)
	require.NoError(t, err)
	require.Equal(t, good, clip.Name())
	require.Equal(t, []int16{1, 2, 3}, clip.PCM())

	tests := []struct {
		path string
		want error
	}{
		{path: bad, want: ErrNotWAV},
		{path: filepath.Join(dir, "missing.wav"), want: fs.ErrNotExist},
	}
	for _, tt := range tests {
		clip, err := LoadWAV(tt.path)
		require.Nil(t, clip)
		require.Truef(t, errors.Is(err, tt.want), "%v", err)
		require.ErrorContains(t, err, tt.path)
	}
	clip, err = LoadWAV(dir) // a directory opens, then fails to read
	require.Nil(t, clip)
	require.ErrorContains(t, err, dir)
}

// The committed fixture: 0.1 s of A 440 at 16 kHz stereo, right channel at
// half level, behind an odd-length LIST chunk.
func TestLoadWAVFixture(t *testing.T) {
	clip, err := LoadWAV(filepath.Join("testdata", "a440-16k-stereo.wav"))
	require.NoError(t, err)
	require.Len(t, clip.PCM(), 800)
	middle := clip.PCM()[100:700]
	require.InDelta(t, 6000, measureAmplitude(middle, 440, SampleRate), 6000*0.06)
	require.Less(t, measureAmplitude(middle, 880, SampleRate), 60.0)
}

func FuzzReadWAV(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		clip, err := ReadWAV("fuzz.wav", bytes.NewReader(data))
		if err != nil {
			require.Nil(t, clip)
			known := errors.Is(err, ErrNotWAV) || errors.Is(err, ErrUnsupportedFormat) ||
				errors.Is(err, ErrEmptyClip) || errors.Is(err, ErrClipTooLong)
			require.True(t, known, "unexpected error %v", err)
			require.ErrorContains(t, err, `"fuzz.wav"`)
			return
		}
		require.NotEmpty(t, clip.PCM())
		// Output is bounded by input: at most one 8 kHz sample per 2 bytes
		// (the source rate is never below 8 kHz), whatever the header says.
		require.LessOrEqual(t, len(clip.PCM()), len(data)/2)
	})
}
