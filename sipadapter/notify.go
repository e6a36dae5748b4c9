package sipadapter

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// Telling by instant message: the parker gets "Parked at 701" (its phones
// show it when they show nothing else), and the addresses of
// EngineConfig.Notify (an IM group, a chat bridge) hear of every park and
// every end of a park: who, where, by whom, and how it ended. Out of
// dialog MESSAGEs (RFC 3428), text/plain; a failure changes nothing.

// noticeTimeout bounds one MESSAGE.
const noticeTimeout = 5 * time.Second

// notifyParker tells the parker where the call waits: a MESSAGE to each of
// its phones (Locate), or to its URI. The orbit was also in the 200 OK or
// the REFER's NOTIFY.
func (e *Engine) notifyParker(parker string, o orbit.Orbit) {
	e.message(parker, o, "Parked at "+string(o))
}

// notifyWatchers tells the Notify addresses of a park or an end of a park
// of this node's lot (another node tells of its own).
func (e *Engine) notifyWatchers(ev park.Event) {
	if len(e.cfg.Notify) == 0 || ev.Call.Node != "" {
		return
	}
	text, ok := noticeText(ev)
	if !ok {
		return
	}
	e.noticeMu.Lock()
	defer e.noticeMu.Unlock()
	if e.notices == nil {
		return // shut down
	}
	select {
	case e.notices <- notice{ev.Call.Orbit, text}:
	default:
		e.log.Warn("notice dropped: too many waiting", "text", text)
	}
}

// noticeQueue bounds the notices waiting for sendNotices.
const noticeQueue = 1024

// sendNotices sends the queued notices to every Notify address, one after
// another, so that each address reads them in the order the calls moved.
// It returns when stopNotices has closed the queue and it is empty.
func (e *Engine) sendNotices(queue <-chan notice, done chan<- struct{}) {
	defer close(done)
	for n := range queue {
		for _, to := range e.cfg.Notify {
			e.messageEach(to, n.orbit, n.text, func(send func()) { send() })
		}
	}
}

// notice is a message for the Notify addresses about a call in orbit.
type notice struct {
	orbit orbit.Orbit
	text  string
}

// stopNotices closes the queue once the lot has told its last event, and
// waits up to noticeTimeout for what is queued to go.
func (e *Engine) stopNotices() {
	e.noticeMu.Lock()
	q := e.notices
	e.notices = nil
	e.noticeMu.Unlock()
	if q == nil {
		return
	}
	close(q)
	select {
	case <-e.noticesDone:
	case <-time.After(noticeTimeout):
		e.log.Warn("shutdown: notices still unsent")
	}
}

// noticeText is what the Notify addresses read of ev: a park or an end
// (false for any other event).
func noticeText(ev park.Event) (string, bool) {
	switch ev.Kind {
	case park.EventParked:
		text := fmt.Sprintf("Parked at %s: %s", ev.Call.Orbit, who(ev.Call.Party))
		if ev.Call.Parker != "" {
			text += ", by " + ev.Call.Parker
		}
		return text, true
	case park.EventEnded:
		text := fmt.Sprintf("Left %s: %s, %s", ev.Call.Orbit, who(ev.Call.Party), ev.Outcome)
		if ev.Err != nil {
			text += " (" + ev.Err.Error() + ")"
		}
		return text, true
	}
	return "", false
}

func who(party string) string {
	if party == "" {
		return "a caller"
	}
	return party
}

// message sends text about the call in o to uri's phones (Locate) or to
// uri, from the park extension, on the engine's tasks.
func (e *Engine) message(uri string, o orbit.Orbit, text string) {
	e.messageEach(uri, o, text, e.tasks.Go)
}

// messageEach finds uri's targets and hands run a send of text to each:
// run calls it in order (the Notify queue) or on a task (message).
func (e *Engine) messageEach(uri string, o orbit.Orbit, text string, run func(func())) {
	targets, err := e.dialTargets(uri, "")
	if err != nil {
		e.log.Debug("notice not sent", "to", uri, "err", err)
		e.told(Telling{Kind: Messaged, Orbit: o, To: uri, Err: err})
		return
	}
	for _, t := range targets {
		run(func() { e.sendMessage(t, uri, o, text) })
	}
}

// sendMessage sends one MESSAGE of text about the call in o to t, one of
// uri's targets.
func (e *Engine) sendMessage(t Target, uri string, o orbit.Orbit, text string) {
	ctx, cancel := context.WithTimeout(e.tasksCtx, noticeTimeout)
	defer cancel()
	req := sip.NewRequest(sip.MESSAGE, *t.URI.Clone())
	req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
	req.SetBody([]byte(text))
	from := identity("Park", userURI(e.cfg.ParkExtension, e.addr))
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	t.applyTo(req)
	res, err := clientDo(ctx, e.client, req)
	switch {
	case err != nil:
		e.log.Debug("notice failed", "to", uri, "err", err)
	case !res.IsSuccess():
		err = fmt.Errorf("MESSAGE answered %d %s", res.StatusCode, res.Reason)
		e.log.Debug("notice refused", "to", uri, "status", res.StatusCode)
	}
	e.told(Telling{Kind: Messaged, Orbit: o, To: uri, Err: err})
}

// checkNotify refuses a Notify address no MESSAGE could be sent to; field
// names the setting ("EngineConfig.Notify").
func checkNotify(field string, uris []string) error {
	for i, u := range uris {
		var uri sip.Uri
		if err := sip.ParseUri(u, &uri); err != nil || uri.Host == "" || !park.IsSIPURI(u) {
			return &ConfigError{fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("%q", u), "must be a sip: URI such as sip:parking@chat.example.com"}
		}
	}
	return nil
}
