package main

import (
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/sipadapter"
)

// The PBX's call legs are sipadapter.Legs: one SIP dialog each, with an RTP
// endpoint from the PBX's port pool. Two bridged legs are one call; a leg
// taken out of its call is the park.Leg the lot holds while its party is
// parked, and all the lot ever does to it is play music (Hold) or hang up.

// newLeg builds a leg and files it under its dialog key; it forgets itself
// and gives its port back when it closes.
func (p *PBX) newLeg(cfg sipadapter.LegConfig) *sipadapter.Leg {
	cfg.Ports = p.ports
	cfg.OnClose = p.forget
	cfg.Logger = p.log
	l, err := sipadapter.NewLeg(cfg)
	if err != nil {
		panic(err) // the PBX always fills Dialog, Endpoint and SDP
	}
	p.mu.Lock()
	p.legs[l.Key()] = l
	p.mu.Unlock()
	return l
}

func (p *PBX) forget(l *sipadapter.Leg) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.legs[l.Key()] == l {
		delete(p.legs, l.Key())
	}
}

// lookup finds the leg an in-dialog request belongs to.
func (p *PBX) lookup(req *sip.Request) *sipadapter.Leg {
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
