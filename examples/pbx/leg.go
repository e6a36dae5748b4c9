package main

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// leg is one SIP dialog of the PBX with its RTP port: the caller's side or
// the callee's side of a call, a phone that dialled the park extension or an
// orbit, or an answered recall. Two bridged legs are one call. It is the
// park.Leg the lot holds while its party is parked: the PBX supplies it, and
// the lot only ever holds it (music) or hangs it up.
type leg struct {
	p   *PBX
	key string // dialog key in p.legs
	dlg sipadapter.Dialog
	uas *sipgo.DialogServerSession // the answered INVITE's session; nil for a leg the PBX placed
	ep  *media.Endpoint
	// party is who is on this leg: the extension's address of record
	// (sip:101@pbx) when known, else the From or target URI. It becomes the
	// parker or the parked party in the lot.
	party string
	sdp   *media.Session // the leg's o= line and last body across re-INVITEs
	// settled is closed once the leg is bridged, parked or gone: a REFER
	// that arrives in the moment between a phone's answer and the bridge
	// waits for it.
	settled     chan struct{}
	settledOnce sync.Once

	mu        sync.Mutex
	confirmed bool        // ACK received (UAS) or sent (UAC)
	music     *media.Clip // what to play once confirmed
	playing   bool
	peer      *leg
	relay     *media.Relay
	call      *park.Call // while parked
	closed    bool
	closeOnce sync.Once
	byeOnce   sync.Once
}

// settle releases whoever waits for the leg to be bridged or parked.
func (l *leg) settle() { l.settledOnce.Do(func() { close(l.settled) }) }

// waitSettled waits, briefly, until the leg is bridged, parked or gone.
func (l *leg) waitSettled() {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-l.settled:
	case <-t.C:
	}
}

// errLegGone: a party hung up before its leg could be bridged or parked.
var errLegGone = errors.New("pbx: the party hung up")

var _ park.Leg = (*leg)(nil)

// Hold implements park.Leg: the leg's call is parked, so it hears music
// (from the moment its dialog is confirmed).
func (l *leg) Hold(_ context.Context, music *media.Clip) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errLegGone
	}
	l.music = music
	if l.confirmed {
		return l.playLocked()
	}
	return nil
}

func (l *leg) playLocked() error {
	if l.music == nil || l.playing || l.closed || l.relay != nil {
		return nil
	}
	if err := l.ep.PlayMusic(l.music.Frames(l.ep.Codec())); err != nil {
		return err
	}
	l.playing = true
	return nil
}

// confirm marks the dialog confirmed and starts any music it waits for.
func (l *leg) confirm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.confirmed = true
	if err := l.playLocked(); err != nil {
		l.p.log.Warn("hold music did not start", "party", l.party, "err", err)
	}
}

// Hangup implements park.Leg: the lot drops the call or hands its place to
// another leg.
func (l *leg) Hangup(ctx context.Context) error {
	l.hangup(ctx)
	return nil
}

// hangup sends BYE once, unless the party already left, and frees the leg.
func (l *leg) hangup(ctx context.Context) {
	if l.isClosed() {
		return
	}
	l.byeOnce.Do(func() {
		if err := l.dlg.Bye(ctx); err != nil {
			l.p.log.Debug("BYE failed", "party", l.party, "err", err)
		}
	})
	l.close()
}

// close frees the leg's media and forgets its dialog. Idempotent.
func (l *leg) close() {
	l.closeOnce.Do(func() {
		defer l.settle()
		l.mu.Lock()
		l.closed = true
		relay := l.relay
		l.mu.Unlock()
		if relay != nil {
			relay.Close()
		}
		l.p.ports.FreeEndpoint(l.ep)
		l.p.forget(l)
		l.dlg.Close()
	})
}

func (l *leg) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// bridge connects two legs' audio and links them, so that a BYE on one
// ends the other. Music stops; whichever leg was parked is no longer.
func (p *PBX) bridge(a, b *leg) error {
	relay, err := media.Bridge(a.ep, b.ep)
	if err != nil {
		if a.isClosed() || b.isClosed() {
			return errLegGone
		}
		return err
	}
	link := func(l, peer *leg) bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return false
		}
		l.peer, l.relay, l.call, l.music, l.playing = peer, relay, nil, nil, false
		return true
	}
	defer a.settle()
	defer b.settle()
	if !link(a, b) || !link(b, a) {
		relay.Close()
		unlink(a, b)
		return errLegGone
	}
	return nil
}

// unlink takes two bridged legs apart: their relay closes and a BYE on one
// no longer reaches the other.
func unlink(a, b *leg) {
	for _, l := range []*leg{a, b} {
		l.mu.Lock()
		relay := l.relay
		if l.peer == a || l.peer == b {
			l.peer, l.relay = nil, nil
		}
		l.mu.Unlock()
		if relay != nil {
			relay.Close()
		}
	}
}

// remember registers a leg under its dialog key, so in-dialog requests
// find it.
func (p *PBX) remember(l *leg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.legs[l.key] = l
}

func (p *PBX) forget(l *leg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.legs[l.key] == l {
		delete(p.legs, l.key)
	}
}

// lookup finds the leg an in-dialog request belongs to.
func (p *PBX) lookup(req *sip.Request) *leg {
	key, ok := sipadapter.RequestKey(req)
	if !ok {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.legs[key]
}

// legCount is the number of dialogs the PBX holds (tests).
func (p *PBX) legCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.legs)
}

// newEndpoint takes an RTP port and builds an endpoint on it.
func (p *PBX) newEndpoint(n media.Negotiated) (*media.Endpoint, error) {
	conn, err := p.ports.Acquire()
	if err != nil {
		return nil, err
	}
	return p.endpointOn(conn, n)
}

// endpointOn builds an endpoint on a port already taken; on error the port
// is given back.
func (p *PBX) endpointOn(conn *net.UDPConn, n media.Negotiated) (*media.Endpoint, error) {
	return p.ports.Endpoint(conn, media.EndpointOptions{
		Remote:         n.Remote,
		Codec:          n.Codec,
		PayloadType:    n.PayloadType,
		TelephoneEvent: n.TelephoneEvent,
		Scheduler:      p.sched,
		Logger:         p.log.With("component", "rtp"),
	})
}
