package sipadapter

// How a recall reaches its parker: the engine rings the host's phones for
// the parker, or the device that parked the call, or the parker's URI
// (through the host's outbound proxy), and never its own listener.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/park"
)

// locate is EngineConfig.Locate, or nothing found.
func (e *Engine) locate(uri sip.Uri) ([]Target, bool) {
	if e.cfg.Locate == nil {
		return nil, false
	}
	return e.cfg.Locate(uri)
}

// dialTargets are where a recall, the fallback or a notice to uri goes,
// for the parked call parkID ("" for none), in this order:
//
//   - the host's phones, for a URI of the host (Locate: a PBX's extension);
//   - the device that parked the call, when uri is its parker and it
//     parked by REFER: uri, sent to the referrer's Contact (recordDevice),
//     since its Referred-By may name no port (linphone: sip:lp@127.0.0.1),
//     while its user part may say who, behind that device, is the parker;
//   - the URI itself, through EngineConfig.OutboundProxy when there is one.
//
// A target whose request would reach this engine's own listener is never
// rung: an error says so, and the attempt fails at once.
func (e *Engine) dialTargets(uri, parkID string) ([]Target, error) {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return nil, fmt.Errorf("target %q: %w", uri, err)
	}
	if targets, found := e.locate(u); found {
		if len(targets) == 0 {
			return nil, fmt.Errorf("%s: no registered phone", uri)
		}
		return targets, nil
	}
	if dest, ok := e.device(parkID, uri); ok {
		return []Target{{URI: u, dest: &dest}}, nil
	}
	t := Target{URI: u, route: e.proxy}
	if e.isOwnAddress(t) {
		return nil, fmt.Errorf("%s: %w", uri, errOwnAddress)
	}
	return []Target{t}, nil
}

// errOwnAddress is a recall target that would ring this very server.
var errOwnAddress = errors.New("sipadapter: that is this server's own address, not a phone's (name the parker's port, or set an outbound proxy)")

// isOwnAddress reports whether a request to t would reach this engine's
// own listener: its host is the listen IP and its port the listen port,
// or none while the listener is on SIP's default 5060.
func (e *Engine) isOwnAddress(t Target) bool {
	dest := t.URI
	switch {
	case t.route != nil:
		dest = *t.route
	case t.dest != nil:
		dest = *t.dest
	}
	ip, err := netip.ParseAddr(strings.Trim(dest.Host, "[]"))
	if err != nil || ip.Unmap() != e.addr.Addr().Unmap() {
		return false
	}
	port := dest.Port
	if port == 0 {
		port = 5060
	}
	return port == int(e.addr.Port())
}

// recordDevice remembers, for a parked call, that its parker is
// the party of leg l (it sent the REFER that parked the call): a recall to
// that parker rings l's remote target, the device itself. A call that has
// left the lot meanwhile is no longer the engine's to remember.
func (e *Engine) recordDevice(call *park.Call, parker string, l *callLeg) {
	contact, ok := l.Dialog().RemoteTarget()
	if !ok || parker == "" {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if pc := e.parked[call.ID()]; pc != nil {
		pc.device = &parkerDevice{parker: parker, contact: contact}
	}
}

// device returns the Contact of the device recorded for parkID, when uri
// is its parker.
func (e *Engine) device(parkID, uri string) (sip.Uri, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pc := e.parked[parkID]
	if pc == nil || pc.device == nil || pc.device.parker != uri {
		return sip.Uri{}, false
	}
	return pc.device.contact, true
}

// parkerDevice is where a parker who parked by REFER is rung.
type parkerDevice struct {
	parker  string
	contact sip.Uri
}

// Dial rings a recall or fallback target over SIP, as a park.Dialer: an
// INVITE from a new RTP port to each of the target's phones (Locate), or to
// its URI, showing "Park <orbit>" as the caller; CANCELled when ctx ends
// first. The answered call's Connect bridges it with the parked leg. A host
// builds its lot with park.DialerFunc calling this method of the engine it
// builds next.
func (e *Engine) Dial(ctx context.Context, req park.DialRequest) (park.Answered, error) {
	targets, err := e.dialTargets(req.Target, req.Call.ParkID)
	if err != nil {
		return nil, err
	}
	from := identity("Park "+string(req.Call.Orbit), userURI(string(req.Call.Orbit), e.addr))
	l, err := e.ring(ctx, targets, from, req.Target, e.keepsRecallPort(req.Call.ParkID), nil)
	if err != nil {
		return nil, err
	}
	return answeredLeg{e, l}, nil
}

// answeredLeg is a recall or fallback the target answered.
type answeredLeg struct {
	e *Engine
	l *callLeg
}

// Connect bridges the parked leg with the answered call.
func (a answeredLeg) Connect(ctx context.Context, parked park.Leg) error {
	p, ok := parked.(*callLeg)
	if !ok {
		return fmt.Errorf("sipadapter: cannot connect a %T", parked)
	}
	return a.e.bridge(p, a.l)
}

// Hangup ends an answered call the lot has no use for.
func (a answeredLeg) Hangup(ctx context.Context) error {
	return a.l.Hangup(ctx)
}
