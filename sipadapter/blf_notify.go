package sipadapter

import (
	"context"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
)

// What a BLF watcher is told: the dialog state of an orbit, as an RFC 4235
// NOTIFY.

// blfDialog is one parked call as a BLF <dialog>.
type blfDialog struct {
	ID, Party, State string
	Orbit            orbit.Orbit
}

// dialogState lists the calls parked in o (all calls when o is empty).
func (b *blfService) dialogState(o orbit.Orbit) []blfDialog {
	var out []blfDialog
	if o != "" {
		if info, ok := b.lot.Lookup(o); ok {
			out = append(out, blfDialog{ID: info.ParkID, Orbit: info.Orbit, Party: info.Party, State: "confirmed"})
		}
		return out
	}
	for _, info := range b.lot.Calls() {
		out = append(out, blfDialog{ID: info.ParkID, Orbit: info.Orbit, Party: info.Party, State: "confirmed"})
	}
	return out
}

// notify sends the next NOTIFY of the subscription: full state, version + 1,
// bounded by notifyTimeout within ctx. A final NOTIFY ends the
// subscription: later ones are dropped.
func (sub *subscription) notify(ctx context.Context, dialogs []blfDialog, state string, final bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.ended {
		return
	}
	if final {
		sub.ended = true
	}
	b := sub.b
	body := dialogInfoXML(sub.entity, sub.version, dialogs, func(user string) string { return userURI(user, b.addr) })
	sub.version++
	req := sip.NewRequest(sip.NOTIFY, sub.target)
	from := sip.FromHeader{Address: sipURI(sub.user, b.addr), Params: sip.NewParams()}
	from.Params.Add("tag", sub.ourTag)
	to := sip.ToHeader{DisplayName: sub.remote.DisplayName, Address: sub.remote.Address, Params: sub.remote.Params}
	callID := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	sub.cseq++
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: b.contact(sub)})
	req.AppendHeader(sip.NewHeader("Event", "dialog"))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "application/dialog-info+xml"))
	req.SetBody(body)
	if sub.network != "" {
		req.SetTransport(sub.network)
	}
	if sub.conn != "" {
		// Over TLS, back over the watcher's own connection (RFC 5923), as
		// a call's requests go (sipDialog.overPeerConnection).
		req.SetDestination(sub.conn)
	}
	// Over UDP the NOTIFY must leave from the listener, the client's
	// connection address: sipgo sets that address only when it builds the
	// request (ClientRequestBuild), and without it sends from the socket
	// filed under the watcher's Contact, or binds a new one when the Contact
	// never sent us anything. Over TCP it files every accepted connection
	// under the listener's address, so there the NOTIFY gets its Via only
	// and sipgo finds or opens a connection to the Contact. (A client with
	// a SourceRouter does both anyway; the BLF service does not count on one.)
	upgraded := false
	if !sip.IsReliable(req.Transport()) && len(req.String())+udpViaAllowance > udpMessageLimit {
		// RFC 3261 §18.1.1: a request over 1,300 bytes goes over a
		// congestion-controlled transport, and sipgo will not send it over
		// UDP at all. A whole-lot watcher's state passes that with about
		// five calls parked; phones listen on TCP at their UDP port.
		req.SetTransport("TCP")
		upgraded = true
	}
	build := sipgo.ClientRequestBuild
	if sip.IsReliable(req.Transport()) {
		build = sipgo.ClientRequestAddVia
	}
	ctx, cancel := context.WithTimeout(ctx, notifyTimeout)
	defer cancel()
	res, err := clientDo(ctx, b.client, req, build)
	if err != nil {
		if upgraded {
			b.log.Warn("BLF NOTIFY too large for UDP, and TCP to the watcher failed", "entity", sub.entity, "bytes", len(body), "err", err)
		} else {
			b.log.Debug("BLF NOTIFY failed", "entity", sub.entity, "err", err)
		}
		return
	}
	if res.StatusCode == sip.StatusCallTransactionDoesNotExists || res.StatusCode >= 400 && !strings.HasPrefix(state, "terminated") {
		// The watcher forgot the subscription: stop notifying it.
		b.mu.Lock()
		if b.subs[sub.key] == sub {
			delete(b.subs, sub.key)
			b.releaseLocked(sub)
			sub.expires.Stop()
		}
		b.mu.Unlock()
		sub.ended = true
	}
}

// udpMessageLimit is the largest message sipgo sends over UDP (its
// UDPMTUSize less 200: RFC 3261 §18.1.1's 1,300 bytes), and
// udpViaAllowance what the Via it adds at sending may take.
const (
	udpMessageLimit = 1300
	udpViaAllowance = 120
)

// dialogInfoXML renders RFC 4235 dialog-info, always with state="full".
func dialogInfoXML(entity string, version int, dialogs []blfDialog, orbitURI func(string) string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="%s">`+"\n", version, xmlEscape(entity))
	for _, d := range dialogs {
		fmt.Fprintf(&b, `  <dialog id="%s" direction="recipient">`+"\n", xmlEscape(d.ID))
		fmt.Fprintf(&b, "    <state>%s</state>\n", d.State)
		if d.Party != "" {
			fmt.Fprintf(&b, "    <remote><identity>%s</identity></remote>\n", xmlEscape(d.Party))
		}
		fmt.Fprintf(&b, "    <local><identity>%s</identity></local>\n", xmlEscape(orbitURI(string(d.Orbit))))
		b.WriteString("  </dialog>\n")
	}
	b.WriteString("</dialog-info>\n")
	return []byte(b.String())
}

func xmlEscape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
