package parktest

import (
	"github.com/emiago/sipgo/sip"
)

// The phone's calls, filed by dialog so that requests inside one find it.

// register makes c reachable by the peer's in-dialog requests; it reports
// false once the phone is closing.
func (p *Phone) register(c *Call) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.calls[c.dlg.key()] = c
	return true
}

func (p *Phone) unregister(c *Call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls[c.dlg.key()] == c {
		delete(p.calls, c.dlg.key())
	}
}

// dialogIDs returns a request's Call-ID and its To tag and From tag, which are
// our tag and the peer's for a request inside one of our dialogs.
func dialogIDs(req *sip.Request) (callID, localTag, remoteTag string, ok bool) {
	if req.CallID() == nil || req.To() == nil || req.From() == nil {
		return "", "", "", false
	}
	localTag, _ = req.To().Params.Get("tag")
	remoteTag, _ = req.From().Params.Get("tag")
	return req.CallID().Value(), localTag, remoteTag, true
}

// lookupCall finds the call an in-dialog request belongs to.
func (p *Phone) lookupCall(req *sip.Request) *Call {
	callID, localTag, remoteTag, ok := dialogIDs(req)
	if !ok || localTag == "" {
		return nil
	}
	p.mu.Lock()
	c := p.calls[dialogKey(callID, localTag)]
	p.mu.Unlock()
	if c == nil {
		return nil
	}
	if tag := c.dlg.peerTag(); tag != "" && tag != remoteTag {
		return nil
	}
	return c
}
