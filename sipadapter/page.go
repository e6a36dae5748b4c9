package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// Paging: on each park the engine calls each paging address (an overhead
// speaker, a group of desk phones) asking it to answer by itself, says
// "call parked at <orbit>" and hangs up. A page is a courtesy: one not
// answered within Paging.AnswerWait is given up, and none ever delays or
// fails a park.

// Paging is whom the engine pages on each park.
type Paging struct {
	// URIs are the sip: URIs paged on each park of this node.
	URIs []string
	// AnswerWait is how long a page rings before it is given up: 5 s
	// when zero.
	AnswerWait time.Duration
	// MaxPages bounds the pages under way at once; a park beyond it pages
	// nobody (logged). 8 when zero.
	MaxPages int
}

// Paging's defaults.
const (
	DefaultPageAnswerWait = 5 * time.Second
	DefaultMaxPages       = 8
)

// pageHeaders ask a phone to answer by itself: Call-Info answer-after
// (Polycom, Yealink, Snom; RFC 5373's intent) and Alert-Info
// auto-answer (Grandstream, Cisco SPA). baresip needs ;answermode=auto on
// its account instead.
func (e *Engine) pageHeaders() []sip.Header {
	return []sip.Header{
		sip.NewHeader("Call-Info", "<sip:"+e.addr.String()+">;answer-after=0"),
		sip.NewHeader("Alert-Info", "<http://127.0.0.1/auto>;info=alert-autoanswer"),
	}
}

// withDefaults checks p and fills in its defaults; field names the
// setting in errors.
func (p Paging) withDefaults(field string) (Paging, error) {
	for i, u := range p.URIs {
		var uri sip.Uri
		if err := sip.ParseUri(u, &uri); err != nil || uri.Host == "" || !park.IsSIPURI(u) {
			return p, &ConfigError{fmt.Sprintf("%s.URIs[%d]", field, i), fmt.Sprintf("%q", u), "must be a sip: URI such as sip:overhead@10.0.0.9"}
		}
	}
	if p.AnswerWait == 0 {
		p.AnswerWait = DefaultPageAnswerWait
	}
	if p.AnswerWait < 0 {
		return p, &ConfigError{field + ".AnswerWait", p.AnswerWait, "must be positive, or 0 for 5s"}
	}
	if p.MaxPages == 0 {
		p.MaxPages = DefaultMaxPages
	}
	if p.MaxPages < 0 {
		return p, &ConfigError{field + ".MaxPages", p.MaxPages, "must be positive, or 0 for 8"}
	}
	return p, nil
}

// pageOnPark pages every Paging address for a call just parked on this
// node, each on a task of its own.
func (e *Engine) pageOnPark(ev park.Event) {
	if len(e.cfg.Paging.URIs) == 0 || ev.Kind != park.EventParked || ev.Call.Node != "" {
		return
	}
	for _, uri := range e.cfg.Paging.URIs {
		select {
		case e.pages <- struct{}{}:
		default:
			e.log.Info("page skipped: too many under way", "to", uri, "orbit", ev.Call.Orbit, "max", e.cfg.Paging.MaxPages)
			e.told(Telling{Kind: Paged, Orbit: ev.Call.Orbit, To: uri, Err: errTooManyPages})
			continue
		}
		e.tasks.Go(func() {
			defer func() { <-e.pages }()
			e.page(uri, ev.Call.Orbit, ev.Call.Party)
		})
	}
}

// errTooManyPages is a page not placed: Paging.MaxPages were under way.
var errTooManyPages = errors.New("sipadapter: too many pages under way")

// page calls uri, says where the call of party waits (and, when party is
// a number, whose it is), and hangs up.
func (e *Engine) page(uri string, o orbit.Orbit, party string) {
	var err error
	defer func() { e.told(Telling{Kind: Paged, Orbit: o, To: uri, Err: err}) }()
	targets, err := e.dialTargets(uri, "")
	if err != nil {
		e.log.Info("page not placed", "to", uri, "orbit", o, "err", err)
		return
	}
	ringCtx, cancel := context.WithTimeout(e.tasksCtx, e.cfg.Paging.AnswerWait)
	from := identity("Park "+string(o), userURI(string(o), e.addr))
	var l *callLeg
	l, err = e.ring(ringCtx, targets, from, uri, false, nil, e.pageHeaders()...)
	cancel()
	if err != nil {
		e.log.Info("page not answered", "to", uri, "orbit", o, "err", err)
		return
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(e.tasksCtx), 5*time.Second)
		defer cancel()
		_ = l.Hangup(ctx)
	}()
	var tail []string
	if number, ok := media.SpokenNumber(party); ok {
		tail = append([]string{media.PromptFrom}, number...)
	}
	var done <-chan struct{}
	done, err = e.sayOn(l, media.PromptCallParkedAt, o, tail...)
	if err != nil {
		e.log.Warn("page said nothing", "to", uri, "orbit", o, "err", err)
		return
	}
	select {
	case <-done:
		e.log.Info("paged", "to", uri, "orbit", o)
	case <-e.tasksCtx.Done():
		err = fmt.Errorf("page cut short: %w", e.tasksCtx.Err())
		return
	}
	// The last frame has left, not been heard: the speaker's jitter buffer
	// still holds the end of the number, and a BYE now would cut it off.
	t := time.NewTimer(playoutTail)
	defer t.Stop()
	select {
	case <-t.C:
	case <-e.tasksCtx.Done():
	}
}

// playoutTail is how long a page stays up after its last frame is sent: more
// than a phone's jitter buffer holds (60-200 ms), so the speaker plays the
// whole announcement before the BYE closes its stream.
const playoutTail = 300 * time.Millisecond
