// Command genprompts synthesizes the default spoken prompts of package
// media (media/prompts/*.wav) with Debian's espeak-ng: each word or phrase
// is spoken, resampled to 8 kHz by media.ReadWAV, trimmed of the silence
// around it, faded in and out over 2 ms so that clips joined end to end do
// not click, and written as 8 kHz mono 16-bit WAV. Run by go generate in
// package media; the files are committed, so building needs no espeak-ng.
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/callpark/callpark/media"
)

func main() {
	out := flag.String("out", "prompts", "directory to write the WAV files to")
	voice := flag.String("voice", "en-us", "espeak-ng voice")
	speed := flag.Int("speed", 165, "espeak-ng words per minute")
	flag.Parse()
	bin, err := exec.LookPath("espeak-ng")
	if err != nil {
		log.Fatal("genprompts needs espeak-ng (Debian package espeak-ng): ", err)
	}
	total := 0
	for _, p := range media.PromptTexts() {
		wav, err := exec.Command(bin, "-v", *voice, "-s", fmt.Sprint(*speed), "--stdout", p.Text).Output()
		if err != nil {
			log.Fatalf("espeak-ng %q: %v", p.Text, err)
		}
		clip, err := media.ReadWAV(p.Name, bytes.NewReader(wav))
		if err != nil {
			log.Fatalf("%s: %v", p.Name, err)
		}
		pcm := shape(trim(clip.PCM()))
		b := encodeWAV(pcm)
		if err := os.WriteFile(filepath.Join(*out, p.Name+".wav"), b, 0o644); err != nil {
			log.Fatal(err)
		}
		total += len(b)
	}
	log.Printf("%d prompts, %d bytes", len(media.PromptTexts()), total)
}

// trim drops the near-silence espeak-ng leaves before and after the speech.
func trim(pcm []int16) []int16 {
	const floor = 300 // of 32767: well under speech, above espeak's noise
	loud := func(v int16) bool { return v > floor || v < -floor }
	first, last := 0, len(pcm)-1
	for first < len(pcm) && !loud(pcm[first]) {
		first++
	}
	for last > first && !loud(pcm[last]) {
		last--
	}
	return append([]int16(nil), pcm[first:last+1]...)
}

// shape fades the first and last 2 ms (16 samples at 8 kHz).
func shape(pcm []int16) []int16 {
	const n = 16
	for i := 0; i < n && i < len(pcm); i++ {
		pcm[i] = int16(int(pcm[i]) * i / n)
		pcm[len(pcm)-1-i] = int16(int(pcm[len(pcm)-1-i]) * i / n)
	}
	return pcm
}

// encodeWAV writes pcm as a RIFF WAVE file: 8 kHz, mono, 16-bit PCM.
func encodeWAV(pcm []int16) []byte {
	var b bytes.Buffer
	data := 2 * len(pcm)
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+data))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(media.SampleRate), uint32(2 * media.SampleRate), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v) // fmt: PCM, mono, 8 kHz, 16-bit
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(data))
	_ = binary.Write(&b, binary.LittleEndian, pcm)
	return b.Bytes()
}
