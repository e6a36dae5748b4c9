package sipadapter

import (
	"errors"
	"fmt"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
)

// Asterisk and FreeSWITCH users hear the slot they parked in spoken; a
// desk phone seldom shows the X-Park-Orbit header or the MESSAGE. The
// engine says the orbit, from media's prompts (media.SpokenOrbit is the
// one place an orbit becomes words), to whom Announcements ask.

// Announcements are what the engine says to whom.
type Announcements struct {
	// Prompts are the clips said; nil means media.DefaultPrompts().
	Prompts *media.Prompts
	// Parker says "parked at <orbit>" to whoever parks by calling the
	// park extension (or an orbit, a directed park) once the call is
	// parked: the parker's consult call of an attended transfer into park
	// (flow 5b) hears where the call will wait before the parker
	// completes the transfer, as Asterisk's parkers do. The programs turn
	// it on unless -announce none.
	Parker bool
	// Parked says "you are parked at <orbit>" to the party parked by a
	// transfer (REFER, or the Replaces of an attended one), once, before
	// its music (-announce-parked); and to one that called the park
	// extension itself when Parker is off.
	Parked bool
}

// withDefaults loads the default prompts when something is to be said
// (paging says things too).
func (a Announcements) withDefaults(paging bool) Announcements {
	if (a.Parker || a.Parked || paging) && a.Prompts == nil {
		a.Prompts = media.DefaultPrompts()
	}
	return a
}

// announceParked says the orbit to the party of l, just parked in o, when
// Announcements.Parked asks; the music goes on after it. A failure costs
// the party the words, not the park: it is logged.
func (e *Engine) announceParked(l *callLeg, o orbit.Orbit) {
	if !e.cfg.Announcements.Parked {
		return
	}
	err := e.say(l, media.PromptYouAreParkedAt, o)
	if err != nil {
		e.sayFailed(l, o, err)
	}
	e.told(Telling{Kind: Announced, Orbit: o, To: l.Party(), Err: err})
}

// announceToParker says "parked at <orbit>" on l, the call of whoever
// parked by calling the park extension or an orbit, when
// Announcements.Parker asks; else, when Announcements.Parked asks, "you
// are parked at <orbit>", as to any parked party.
func (e *Engine) announceToParker(l *callLeg, o orbit.Orbit) {
	if !e.cfg.Announcements.Parker {
		e.announceParked(l, o)
		return
	}
	err := e.say(l, media.PromptParkedAt, o)
	if err != nil {
		e.sayFailed(l, o, err)
	}
	e.told(Telling{Kind: Announced, Orbit: o, To: l.Party(), Err: err})
}

// sayFailed logs an announcement not played: at Debug when the call was
// retrieved or ended first (a fast retrieve is no fault), else a warning.
func (e *Engine) sayFailed(l *callLeg, o orbit.Orbit, err error) {
	if errors.Is(err, media.ErrBridged) || errors.Is(err, media.ErrClosed) {
		e.log.Debug("parked-at announcement overtaken by the call's end or retrieve", "orbit", o, "party", l.Party(), "err", err)
		return
	}
	e.log.Warn("parked-at announcement not played", "orbit", o, "party", l.Party(), "err", err)
}

// say plays lead, then o spoken digit by digit, on l, once.
func (e *Engine) say(l *callLeg, lead string, o orbit.Orbit) error {
	_, err := e.sayOn(l, lead, o)
	return err
}

// sayOn is say, then the prompts of tail, with the channel closed once all
// has been said.
func (e *Engine) sayOn(l *callLeg, lead string, o orbit.Orbit, tail ...string) (<-chan struct{}, error) {
	names, err := media.SpokenOrbit(string(o))
	if err != nil {
		return nil, err
	}
	clips, err := e.cfg.Announcements.Prompts.Say(append(append([]string{lead}, names...), tail...)...)
	if err != nil {
		return nil, err
	}
	seq, err := media.Sequence(l.Endpoint().Codec(), clips...)
	if err != nil {
		return nil, err
	}
	return l.Endpoint().Announce(seq)
}

// TellingKind says how the engine told someone where a call waits.
type TellingKind int

const (
	// Announced: the orbit spoken on a parked leg (Announcements).
	Announced TellingKind = iota + 1
	// Paged: a page (Paging).
	Paged
	// Messaged: a MESSAGE to a Notify address or the parker.
	Messaged
)

func (k TellingKind) String() string {
	switch k {
	case Announced:
		return "announced"
	case Paged:
		return "paged"
	case Messaged:
		return "messaged"
	}
	return fmt.Sprintf("TellingKind(%d)", int(k))
}

// Telling is one announcement, page or message the engine made about a
// parked call: what an operator's view counts (EngineConfig.OnTelling).
type Telling struct {
	Kind  TellingKind
	Orbit orbit.Orbit
	// To is who was told: the parked leg's party, the paged or messaged
	// URI.
	To string
	// Err is why it did not reach them (not answered, overtaken by the
	// call's end, refused); nil when it did.
	Err error
}

// told counts t and hands it to EngineConfig.OnTelling, if set.
func (e *Engine) told(t Telling) {
	e.metrics.told(t)
	if e.cfg.OnTelling != nil {
		e.cfg.OnTelling(t)
	}
}
