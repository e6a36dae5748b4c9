package media

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/interop"
)

func TestDefaultPrompts(t *testing.T) {
	p := DefaultPrompts()
	total := 0
	for _, pt := range PromptTexts() {
		c, err := p.Clip(pt.Name)
		require.NoError(t, err, pt.Name)
		require.Greater(t, c.Duration(), 150*time.Millisecond, "%s: %q is spoken", pt.Name, pt.Text)
		require.Less(t, c.Duration(), 2*time.Second, pt.Name)
		b, err := defaultPromptFiles.ReadFile("prompts/" + pt.Name + ".wav")
		require.NoError(t, err)
		total += len(b)
	}
	require.Less(t, total, 200<<10, "the embedded set stays well under 200 KB")
	require.Len(t, p.Names(), len(PromptTexts()))
	_, err := p.Clip("eleven")
	require.ErrorIs(t, err, ErrNoPrompt)
}

// One place maps an orbit to what is said.
func TestSpokenOrbit(t *testing.T) {
	for orbit, want := range map[string][]string{
		"*7012": {PromptStar, "7", "0", "1", "2"},
		"#105":  {PromptPound, "1", "0", "5"},
		"701":   {"7", "0", "1"},
	} {
		got, err := SpokenOrbit(orbit)
		require.NoError(t, err, orbit)
		require.Equal(t, want, got, orbit)
	}
	for _, bad := range []string{"", "7a1", "70 1"} {
		_, err := SpokenOrbit(bad)
		require.ErrorIs(t, err, ErrNoPrompt, "%q", bad)
	}
	p := DefaultPrompts()
	names, err := SpokenOrbit("*70")
	require.NoError(t, err)
	clips, err := p.Say(append([]string{PromptParkedAt}, names...)...)
	require.NoError(t, err)
	for i, n := range append([]string{PromptParkedAt}, names...) {
		c, _ := p.Clip(n)
		require.Same(t, c, clips[i], "in order: %s", n)
	}
}

// A directory of WAV files replaces the prompts it names, and only those.
func TestLoadPromptsReplacesWhatItNames(t *testing.T) {
	dir := t.TempDir()
	recorded := wavFile(wavFmt(1, 1, 8000, 16), wavData(100, 200, 300, 400))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "7.wav"), recorded, 0o644))
	p, err := LoadPrompts(dir)
	require.NoError(t, err)
	seven, err := p.Clip("7")
	require.NoError(t, err)
	require.Equal(t, []int16{100, 200, 300, 400}, seven.PCM(), "the recorded seven")
	eight, _ := p.Clip("8")
	def, _ := DefaultPrompts().Clip("8")
	require.Equal(t, def.PCM(), eight.PCM(), "the others as they were")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "eleven.wav"), recorded, 0o644))
	_, err = LoadPrompts(dir)
	require.ErrorIs(t, err, ErrNoPrompt)
	require.ErrorContains(t, err, "eleven.wav", "naming the file")
	_, err = LoadPrompts(filepath.Join(dir, "missing"))
	require.Error(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "eleven.wav")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "9.wav"), []byte("not a WAV"), 0o644))
	_, err = LoadPrompts(dir)
	require.ErrorIs(t, err, ErrNotWAV)
}

// The committed prompts are exactly what go generate makes: anyone can
// make them again.
func TestPromptsAreWhatGenerateMakes(t *testing.T) {
	interop.RequireTool(t, "espeak-ng", "espeak-ng")
	dir := t.TempDir()
	out, err := exec.Command("go", "run", "./internal/genprompts", "-out", dir).CombinedOutput()
	require.NoError(t, err, string(out))
	for _, pt := range PromptTexts() {
		made, err := os.ReadFile(filepath.Join(dir, pt.Name+".wav"))
		require.NoError(t, err)
		committed, err := defaultPromptFiles.ReadFile("prompts/" + pt.Name + ".wav")
		require.NoError(t, err)
		require.True(t, bytes.Equal(made, committed), "%s.wav differs from what go generate makes: run go generate ./media", pt.Name)
	}
}

// An announcement's packets are exactly the prompts' shared frames, in
// order, then the music from the start of its loop; the sequence number
// runs on, and done is closed when the last prompt frame has gone.
func TestAnnouncementSaysThePromptsFramesThenMusic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPrompts()
		names, err := SpokenOrbit("*7012")
		require.NoError(t, err)
		clips, err := p.Say(append([]string{PromptParkedAt}, names...)...)
		require.NoError(t, err)
		seq, err := Sequence(PCMU, clips...)
		require.NoError(t, err)

		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		music := testFrames(PCMU, 3)
		st, err := s.Play(w, testDst, music)
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond)
		synctest.Wait()
		before := len(w.snapshot())
		done := make(chan struct{})
		st.announce(seq, done)
		time.Sleep(time.Duration(seq.Len()-2) * FrameDuration)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("done before the last frame")
		default:
		}
		time.Sleep(4 * FrameDuration)
		synctest.Wait()
		<-done

		pkts := w.snapshot()[before:]
		var want [][]byte
		for _, c := range clips {
			f := c.Frames(PCMU)
			for i := range f.Len() {
				want = append(want, f.Payload(i))
			}
		}
		require.Greater(t, len(pkts), len(want))
		for i, fr := range want {
			require.Equal(t, fr, pkts[i].payload, "frame %d: the prompt's own frame", i)
		}
		require.Equal(t, music.Payload(0), pkts[len(want)].payload, "then the music, from its start")
		for i := 1; i < len(pkts); i++ {
			require.Equal(t, pkts[i-1].hdr.SequenceNumber+1, pkts[i].hdr.SequenceNumber)
		}
	})
}

func TestSequenceRules(t *testing.T) {
	_, err := Sequence(PCMU)
	require.ErrorIs(t, err, ErrEmptyClip)
	c, _ := DefaultPrompts().Clip("7")
	_, err = Sequence(Codec(99), c)
	require.ErrorIs(t, err, ErrInvalidArgument)
}

func TestSpokenNumber(t *testing.T) {
	for uri, want := range map[string][]string{
		"sip:5551234@example.com":    {"5", "5", "5", "1", "2", "3", "4"},
		"sip:+4930123@10.0.0.1:5060": {"4", "9", "3", "0", "1", "2", "3"},
		"sips:101@pbx.example.com":   {"1", "0", "1"},
	} {
		got, ok := SpokenNumber(uri)
		require.True(t, ok, uri)
		require.Equal(t, want, got, uri)
	}
	for _, uri := range []string{"sip:alice@example.com", "sip:example.com", "sip:@x", "sip:1234567890123456@x", ""} {
		_, ok := SpokenNumber(uri)
		require.False(t, ok, uri)
	}
}
