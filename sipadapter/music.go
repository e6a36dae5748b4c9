package sipadapter

import (
	"errors"
	"fmt"
	"sync"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// errUnplayable means a lot's music is of a kind the SIP side cannot play:
// it plays *media.Clip and park.BuiltinMusic.
var errUnplayable = errors.New("sipadapter: music cannot be played")

// checkMusic reports whether music is of a kind the SIP side plays, without
// building anything.
func checkMusic(music park.Music) error {
	switch music.(type) {
	case nil, *media.Clip:
		return nil
	}
	if music == park.BuiltinMusic() {
		return nil
	}
	return fmt.Errorf("%w: %q is a %T, want a *media.Clip", errUnplayable, music.Name(), music)
}

// musicClips turns a lot's music into the clip a leg plays: the clip
// itself, nil for none, and for park.BuiltinMusic the built-in music,
// synthesised once (some 30 ms of CPU and 5 MB: never per park) and shared
// by every leg, so its encodings are shared too. One serves an engine.
type musicClips struct {
	once    sync.Once
	builtin *media.Clip
}

func (m *musicClips) clip(music park.Music) (*media.Clip, error) {
	if err := checkMusic(music); err != nil {
		return nil, err
	}
	if c, ok := music.(*media.Clip); ok {
		return c, nil
	}
	if music == nil {
		return nil, nil
	}
	m.once.Do(func() { m.builtin = media.BuiltinMusic() })
	return m.builtin, nil
}
