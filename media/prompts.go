package media

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:generate go run ./internal/genprompts -out prompts

// A park server tells people where a call waits by saying it: "parked at
// seven zero one". Prompts is the set of clips it says that with, one per
// digit, star and pound, and a few phrases; SpokenOrbit is the one place
// that maps an orbit to the clips that say it. The default set is spoken
// by espeak-ng (go generate) and embedded; LoadPrompts replaces any of it
// with WAV files of another language or a recorded voice.

// The names of the prompts that are not digits (the digits are "0" to "9").
const (
	PromptStar           = "star"
	PromptPound          = "pound"
	PromptParkedAt       = "parked-at"         // said to the parker: "parked at ..."
	PromptCallParkedAt   = "call-parked-at"    // a page: "call parked at ..."
	PromptCallForYouOn   = "call-for-you-on"   // a page naming the party: "call for you on ..."
	PromptYouAreParkedAt = "you-are-parked-at" // said to the parked party
	PromptFrom           = "from"              // a page naming the caller's number: "... from 5 5 5 1"
)

// PromptText is a prompt of the default set: its name and the words
// espeak-ng says for it.
type PromptText struct{ Name, Text string }

// PromptTexts returns every prompt of the default set, digits first: what
// go generate synthesizes, and the names a Prompts always has.
func PromptTexts() []PromptText {
	return []PromptText{
		{"0", "zero"}, {"1", "one"}, {"2", "two"}, {"3", "three"}, {"4", "four"},
		{"5", "five"}, {"6", "six"}, {"7", "seven"}, {"8", "eight"}, {"9", "nine"},
		{PromptStar, "star"}, {PromptPound, "pound"},
		{PromptParkedAt, "parked at"}, {PromptCallParkedAt, "call parked at"},
		{PromptCallForYouOn, "call for you on"}, {PromptYouAreParkedAt, "you are parked at"},
		{PromptFrom, "from"},
	}
}

//go:embed prompts
var defaultPromptFiles embed.FS

// ErrNoPrompt: a Prompts has no clip of that name, or an orbit has a
// character no prompt says.
var ErrNoPrompt = errors.New("media: no such prompt")

// Prompts is a set of spoken clips by name, immutable and safe for
// concurrent use; each clip's encodings are shared, as any Clip's.
type Prompts struct {
	clips map[string]*Clip
}

// DefaultPrompts returns the embedded set, in American English. Each call
// reads it anew (a few hundred microseconds): call it once and share it.
func DefaultPrompts() *Prompts {
	p := &Prompts{clips: make(map[string]*Clip, len(PromptTexts()))}
	for _, t := range PromptTexts() {
		b, err := defaultPromptFiles.ReadFile("prompts/" + t.Name + ".wav")
		if err != nil {
			panic("media: missing embedded prompt " + t.Name) // a build without the WAV files
		}
		c, err := ReadWAV(t.Name, bytes.NewReader(b))
		if err != nil {
			panic(fmt.Sprintf("media: embedded prompt %s: %v", t.Name, err))
		}
		p.clips[t.Name] = c
	}
	return p
}

// LoadPrompts returns the default set with each of its prompts for which
// dir holds a WAV file of that name ("7.wav", "parked-at.wav") replaced by
// that file. A WAV file of no prompt's name is an error naming it, as is
// one ReadWAV refuses: a typo should not leave a prompt silently unchanged.
func LoadPrompts(dir string) (*Prompts, error) {
	p := DefaultPrompts()
	files, err := filepath.Glob(filepath.Join(dir, "*.wav"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("media: prompts: %w", err)
		}
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".wav")
		if _, ok := p.clips[name]; !ok {
			return nil, fmt.Errorf("media: prompts: %s: %w (the prompts are %s)", f, ErrNoPrompt, strings.Join(p.Names(), ", "))
		}
		c, err := LoadWAV(f)
		if err != nil {
			return nil, err
		}
		p.clips[name] = c
	}
	return p, nil
}

// Names returns the names of the set's prompts, sorted.
func (p *Prompts) Names() []string {
	names := make([]string, 0, len(p.clips))
	for n := range p.clips {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Clip returns the prompt named name; an error wrapping ErrNoPrompt if the
// set has none.
func (p *Prompts) Clip(name string) (*Clip, error) {
	if c, ok := p.clips[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrNoPrompt, name)
}

// Say returns the clips of the prompts named, in order.
func (p *Prompts) Say(names ...string) ([]*Clip, error) {
	out := make([]*Clip, 0, len(names))
	for _, n := range names {
		c, err := p.Clip(n)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// SpokenNumber returns the prompts that say a caller's number, digit by
// digit, when the user part of uri (sip:5551234@host) is one: digits,
// with a leading '+' left unsaid, at most 15 (E.164); false otherwise.
func SpokenNumber(uri string) ([]string, bool) {
	user := uri
	if i := strings.IndexByte(user, ':'); i >= 0 {
		user = user[i+1:]
	}
	at := strings.IndexByte(user, '@')
	if at < 0 {
		return nil, false
	}
	user = strings.TrimPrefix(user[:at], "+")
	if user == "" || len(user) > 15 {
		return nil, false
	}
	names := make([]string, 0, len(user))
	for _, r := range user {
		if r < '0' || r > '9' {
			return nil, false
		}
		names = append(names, string(r))
	}
	return names, true
}

// SpokenOrbit returns the prompts that say orbit o, one per character:
// "*7012" is star, seven, zero, one, two. It takes a string so that media
// needs no orbit package; any character but a digit, '*' and '#' is an
// error wrapping ErrNoPrompt.
func SpokenOrbit(o string) ([]string, error) {
	names := make([]string, 0, len(o))
	for _, r := range o {
		switch {
		case r >= '0' && r <= '9':
			names = append(names, string(r))
		case r == '*':
			names = append(names, PromptStar)
		case r == '#':
			names = append(names, PromptPound)
		default:
			return nil, fmt.Errorf("%w: orbit %q: no prompt says %q", ErrNoPrompt, o, r)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: an empty orbit", ErrNoPrompt)
	}
	return names, nil
}

// Sequence returns clips one after another, encoded with codec, to be said
// once (Endpoint.Announce). Each clip contributes its own shared frames
// (Clip.Frames: encoded once per codec for every call that says it),
// padded with silence to a whole frame as in its loop, so a listener
// receives exactly the prompts' frames, in order. Errors: ErrEmptyClip for
// no clips, ErrInvalidArgument for a codec other than PCMU and PCMA.
func Sequence(codec Codec, clips ...*Clip) (*Frames, error) {
	if !codec.Valid() {
		return nil, fmt.Errorf("%w: Sequence: codec %v", ErrInvalidArgument, codec)
	}
	if len(clips) == 0 {
		return nil, fmt.Errorf("media: Sequence: %w", ErrEmptyClip)
	}
	n := 0
	for _, c := range clips {
		n += c.Frames(codec).Len()
	}
	f := &Frames{codec: codec, payloads: make([][]byte, 0, n)}
	for _, c := range clips {
		f.payloads = append(f.payloads, c.Frames(codec).payloads...)
	}
	return f, nil
}
