package main

// What the PBX adds to the park engine (sipadapter.Engine). The lot
// decides: which orbit, who retrieves, when to recall, the fallback,
// exactly one outcome. The engine runs every SIP flow around it: park by
// INVITE or REFER, retrieve, attended transfer into park, recall, BLF,
// hang-ups. The PBX says only what a PBX knows: who is calling (digest
// auth), where an extension rings (its registered phones), and that a call
// to an extension is a call, not a park.

import (
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/sipadapter"
)

// admit is the engine's Admit: every new INVITE authenticates, and the
// caller is named by its extension's URI here. While the PBX shuts down new
// calls get 503.
func (p *PBX) admit(req *sip.Request, tx sip.ServerTransaction) (string, bool) {
	p.mu.Lock()
	closing := p.closing
	p.mu.Unlock()
	if closing {
		sipadapter.Reply(p.log, req, tx, sip.StatusServiceUnavailable, "Service Unavailable", sip.NewHeader("Retry-After", "30"))
		return "", false
	}
	caller, ok := p.auth.Authenticate(req, tx)
	if !ok {
		return "", false
	}
	return p.URI(caller), true
}

// call is the engine's Calls: a new INVITE to an extension rings every
// registered phone of it (Engine.Connect); to anything else, 404.
func (p *PBX) call(req *sip.Request, tx sip.ServerTransaction, caller string) {
	callee := sipadapter.URIUser(req.Recipient)
	if !p.users.Exists(callee) {
		p.log.Info("call refused", "from", caller, "to", callee, "status", 404)
		sipadapter.Reply(p.log, req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	targets, _ := p.locate(req.Recipient)
	p.engine.Connect(req, tx, caller, targets)
}

// locate is the engine's Locate: an extension of this PBX rings its
// registered phones; any other URI is not the PBX's.
func (p *PBX) locate(u sip.Uri) ([]sipadapter.Target, bool) {
	user := sipadapter.URIUser(u)
	if !p.users.Exists(user) || !p.isLocalHost(u) {
		return nil, false
	}
	var targets []sipadapter.Target
	for _, b := range p.reg.Contacts(user) {
		targets = append(targets, sipadapter.Target{URI: b.Contact, Transport: b.Transport})
	}
	return targets, true
}

// isLocalHost reports whether a URI names this PBX: its address, or no
// port and its IP.
func (p *PBX) isLocalHost(u sip.Uri) bool {
	if u.Host != p.addr.Addr().String() {
		return false
	}
	return u.Port == 0 || u.Port == int(p.addr.Port())
}

// legCount is the number of dialogs the PBX holds (tests).
func (p *PBX) legCount() int {
	if p.engine == nil {
		return 0
	}
	return p.engine.Len()
}
