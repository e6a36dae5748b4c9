package sipadapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// A parked call outlives its node (issue 13, CLUSTER.md 9-12): another
// node continues the parked party's dialog from a handoff, what the leg's
// node wrote of it. The new node sends the party an in-dialog re-INVITE:
// the same Call-ID and tags, a CSeq above any the old node used, its own
// Contact, and SDP with the same o= session id, a higher version and its
// own address, so that music resumes from the new node. FreeSWITCH's
// `sofia recover` broke on each of these (a lower CSeq: 500; swapped tags:
// 481; stale routes and media addresses).

// handoff is what another node needs to continue a leg's dialog and media.
// Whichever side began the dialog, it is written from our side: Local is
// our From/To value with our tag, Remote theirs with their tag.
type handoff struct {
	CallID string `json:"call_id"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
	// Target is the party's Contact URI, where in-dialog requests go.
	Target string `json:"target"`
	// Route is the route set as Route header values, in sending order.
	Route []string `json:"route,omitempty"`
	// CSeq is the last CSeq we used in the dialog.
	CSeq      uint32 `json:"cseq"`
	Transport string `json:"transport"`
	// SDPID and SDPVersion are our o= line's, as last sent.
	SDPID      uint64 `json:"sdp_id"`
	SDPVersion uint64 `json:"sdp_version"`
	// Codec is the codec in use ("PCMU", "PCMA"), offered first again.
	Codec string `json:"codec"`
	// SRTP is the leg's SRTP suite ("AES_CM_128_HMAC_SHA1_80"), empty
	// for plain RTP. The keys are not handed over: the new node offers
	// RTP/SAVP with a fresh key of its own (the party answers with its
	// key), so no key is ever written to the cluster's store, and the old
	// node's key is never used again with a new sender's SSRC, sequence
	// and rollover counter (RFC 3711 §9.1: keystream reuse).
	SRTP string `json:"srtp,omitempty"`
}

// takeoverAnswerWait bounds the party's answer to a takeover re-INVITE. A
// phone answers a re-INVITE at once, without asking anyone; one that has
// not in this long is gone, and its call is lost rather than left silent
// until Timer B.
const takeoverAnswerWait = 8 * time.Second

// cseqMargin is how far above the last CSeq written a new node starts: the
// old node may have sent requests after its last write (a NOTIFY, a BYE
// that never got out). A party accepts any higher CSeq (RFC 3261 §12.2.2).
const cseqMargin = 100

// handoff returns the leg's handoff as things stand.
func (l *callLeg) handoff() (handoff, error) {
	var h handoff
	d := l.dlg
	switch {
	case d.uas != nil:
		inv := d.uas.InviteRequest
		h.CallID, h.Local, h.Remote = inv.CallID().Value(), inv.To().Value(), inv.From().Value()
		if c := inv.Contact(); c != nil {
			h.Target = c.Address.String()
		}
		for _, rr := range inv.GetHeaders("Record-Route") {
			h.Route = append(h.Route, rr.Value())
		}
		h.CSeq, h.Transport = d.uas.CSEQ(), inv.Transport()
	case d.uac != nil:
		inv, res := d.uac.InviteRequest, d.uac.InviteResponse
		h.CallID, h.Local, h.Remote = inv.CallID().Value(), inv.From().Value(), res.To().Value()
		if c := res.Contact(); c != nil {
			h.Target = c.Address.String()
		}
		rrs := res.GetHeaders("Record-Route")
		for i := len(rrs) - 1; i >= 0; i-- {
			h.Route = append(h.Route, rrs[i].Value())
		}
		h.CSeq, h.Transport = d.uac.CSEQ(), inv.Transport()
	default:
		return h, errors.New("sipadapter: the leg has no dialog")
	}
	h.SDPID, h.SDPVersion = l.sdp.Origin()
	h.Codec = l.ep.Codec().String()
	if suite, ok := l.ep.SRTP(); ok {
		h.SRTP = suite.String()
	}
	return h, nil // checked where it is read (parseHandoff), not each time it is written
}

// marshal writes h for the cluster's record of the call.
func (h handoff) marshal() []byte {
	b, _ := json.Marshal(h) // strings and numbers only
	return b
}

// parseHandoff reads a handoff another node wrote. It is outside input
// (Redis): every field is checked before a dialog is built from it.
func parseHandoff(b []byte) (handoff, error) {
	var h handoff
	if len(b) == 0 {
		// The store had none, or none this node could read (a handoff
		// sealed with another cluster key: redispark logged why).
		return h, &HandoffError{Field: "(all)", Why: "none this node can read"}
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("sipadapter: handoff: %w", err)
	}
	return h, h.check()
}

// HandoffError says which field of a handoff is unusable.
type HandoffError struct {
	Field string
	Why   string
}

func (e *HandoffError) Error() string {
	return "sipadapter: handoff field " + e.Field + ": " + e.Why
}

// check refuses a handoff no dialog can be continued from: it builds the
// dialog's messages as adoptDialog does, so whatever passes builds one.
func (h handoff) check() error {
	bad := func(field, why string) error { return &HandoffError{Field: field, Why: why} }
	if h.CallID == "" || strings.ContainsAny(h.CallID, " \t\r\n") {
		return bad("call_id", "empty or with white space")
	}
	for _, f := range []struct{ name, value string }{{"local", h.Local}, {"remote", h.Remote}, {"target", h.Target}} {
		if f.value == "" || strings.ContainsAny(f.value, "\r\n") {
			return bad(f.name, "empty or with a line break")
		}
	}
	for _, f := range []struct{ name, value string }{{"local", h.Local}, {"remote", h.Remote}} {
		var uri sip.Uri
		params := sip.NewParams()
		if _, err := sip.ParseAddressValue(f.value, &uri, &params); err != nil {
			return bad(f.name, err.Error())
		}
	}
	var target sip.Uri
	if strings.ContainsAny(h.Target, " \t<>") || sip.ParseUri(h.Target, &target) != nil || target.Host == "" {
		return bad("target", fmt.Sprintf("%q is not a SIP URI", h.Target))
	}
	for _, r := range h.Route {
		if r == "" || strings.ContainsAny(r, "\r\n") {
			return bad("route", "empty or with a line break")
		}
	}
	switch strings.ToUpper(h.Transport) {
	case "UDP", "TCP", "TLS", "WS", "WSS":
	default:
		return bad("transport", fmt.Sprintf("%q", h.Transport))
	}
	if h.CSeq > 1<<31-cseqMargin-1 {
		return bad("cseq", "too large to go above (RFC 3261: below 2**31)")
	}
	if _, ok := codecNamed(h.Codec); !ok {
		return bad("codec", fmt.Sprintf("%q", h.Codec))
	}
	if _, ok := suiteNamed(h.SRTP); !ok {
		return bad("srtp", fmt.Sprintf("%q is no SRTP suite", h.SRTP))
	}
	inv, res, err := h.messages("127.0.0.1:5060", "<sip:park@127.0.0.1:5060>")
	if err != nil {
		return err
	}
	if tag, _ := inv.From().Params.Get("tag"); tag == "" {
		return bad("local", "no tag")
	}
	if tag, _ := res.To().Params.Get("tag"); tag == "" {
		return bad("remote", "no tag")
	}
	if inv.CallID().Value() != h.CallID {
		return bad("call_id", fmt.Sprintf("%q does not survive a SIP header", h.CallID))
	}
	return nil
}

// messages makes up the INVITE and its 2xx a dialog continued from h
// reads: From ours, To theirs, the party's Contact, the route set as the
// 2xx's Record-Route (a client session reverses it), CSeq cseqMargin
// above h's. via is our host:port, contact our Contact value.
func (h handoff) messages(via, contact string) (*sip.Request, *sip.Response, error) {
	bad := func(part string, err error) error {
		return &HandoffError{Field: "(" + part + ")", Why: err.Error()}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE %s SIP/2.0\r\n", h.Target)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=%s\r\n", strings.ToUpper(h.Transport), via, sip.GenerateBranch())
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nCall-ID: %s\r\n", h.Local, h.Remote, h.CallID)
	fmt.Fprintf(&b, "CSeq: %d INVITE\r\nContact: %s\r\nContent-Length: 0\r\n\r\n", h.CSeq+cseqMargin, contact)
	msg, err := sip.ParseMessage([]byte(b.String()))
	if err != nil {
		return nil, nil, bad("INVITE", err)
	}
	inv, ok := msg.(*sip.Request)
	if !ok || inv.From() == nil || inv.To() == nil || inv.CallID() == nil || inv.CSeq() == nil {
		return nil, nil, bad("INVITE", errors.New("incomplete"))
	}
	b.Reset()
	fmt.Fprintf(&b, "SIP/2.0 200 OK\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\n", h.Local, h.Remote, h.CallID)
	fmt.Fprintf(&b, "CSeq: %d INVITE\r\nContact: <%s>\r\n", h.CSeq+cseqMargin, h.Target)
	for _, r := range slices.Backward(h.Route) {
		fmt.Fprintf(&b, "Record-Route: %s\r\n", r)
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	if msg, err = sip.ParseMessage([]byte(b.String())); err != nil {
		return nil, nil, bad("2xx", err)
	}
	res, ok := msg.(*sip.Response)
	if !ok || res.To() == nil || res.Contact() == nil {
		return nil, nil, bad("2xx", errors.New("incomplete"))
	}
	for _, rr := range res.GetHeaders("Record-Route") {
		var uri sip.Uri
		params := sip.NewParams()
		if _, err := sip.ParseAddressValue(rr.Value(), &uri, &params); err != nil {
			return nil, nil, &HandoffError{Field: "route", Why: err.Error()}
		}
	}
	inv.SetTransport(strings.ToUpper(h.Transport))
	res.SetTransport(inv.Transport())
	return inv, res, nil
}

func codecNamed(name string) (media.Codec, bool) {
	for _, c := range []media.Codec{media.PCMU, media.PCMA} {
		if c.String() == name {
			return c, true
		}
	}
	return 0, false
}

// suiteNamed reads a handoff's SRTP suite: "" is plain RTP (0).
func suiteNamed(name string) (media.SRTPSuite, bool) {
	if name == "" {
		return 0, true
	}
	for _, s := range []media.SRTPSuite{media.SuiteAESCM128SHA1_80, media.SuiteAESCM128SHA1_32} {
		if s.String() == name {
			return s, true
		}
	}
	return 0, false
}

// adoptDialog builds, from h, the dialog this node continues: a client
// session reading the INVITE and 2xx h's messages make up.
func (e *Engine) adoptDialog(h handoff) (sipDialog, error) {
	ua := e.uaFor(h.Transport) // a dialog over TLS stays on TLS at this node
	inv, res, err := h.messages(e.addr.String(), ua.ContactHDR.Value())
	if err != nil {
		return sipDialog{}, err
	}
	s := &sipgo.DialogClientSession{UA: ua, Dialog: sipgo.Dialog{InviteRequest: inv, InviteResponse: res}}
	s.Init()
	s.InitWithState(sip.DialogStateConfirmed)
	d := clientDialog(s)
	d.adopted = true
	return d, nil
}

// adopt continues a parked leg from h, the handoff of another node: a new
// RTP port, the dialog (adoptDialog), and a re-INVITE offering the party
// one-way audio from here: SRTP if the leg was (a fresh key of ours; the
// party's answer gives its own), unless this node's policy is SRTPOff. The leg is filed under the dialog's key, so
// the party's BYE and re-INVITEs reach it. On error nothing is kept: the
// party refused or did not answer (the caller ends the call as lost).
func (e *Engine) adopt(ctx context.Context, h handoff, party string) (*callLeg, error) {
	codec, _ := codecNamed(h.Codec)
	suite, _ := suiteNamed(h.SRTP)
	dlg, err := e.adoptDialog(h)
	if err != nil {
		return nil, err
	}
	conn, err := e.ports.acquire()
	if err != nil {
		return nil, err
	}
	ep, err := e.media.endpoint(conn, media.Negotiated{Codec: codec})
	if err != nil {
		return nil, err
	}
	local := media.LocalMedia{
		Addr: netip.AddrPortFrom(e.media.IP, ep.LocalAddr().Port()), Username: e.media.Username,
		SessionID: h.SDPID, SessionVersion: h.SDPVersion + 1, SRTP: e.media.SRTP,
	}
	switch {
	case e.media.SRTP == media.SRTPOff:
		// Plain, as this node's policy says; a party that insists on SRTP
		// refuses, and the call is lost.
	case suite != 0:
		local.SRTPSuite, local.SRTPKey = suite, media.NewSRTPKey()
	case e.media.SRTP == media.SRTPRequired:
		local.SRTPSuite, local.SRTPKey = media.SuiteAESCM128SHA1_80, media.NewSRTPKey()
	}
	sess := media.NewSession(local)
	l := e.newLeg(legConfig{Dialog: dlg, Endpoint: ep, SDP: sess, Direction: media.SendOnly, Confirmed: true, Party: party})
	wait, cancel := context.WithTimeout(ctx, takeoverAnswerWait)
	defer cancel()
	if err := l.Reoffer(wait, media.SendOnly); err != nil {
		var refused *refusedError
		if errors.As(err, &refused) && refused.Code == sip.StatusCallTransactionDoesNotExists {
			l.Close() // the party has no such call any more: nothing to end
		} else {
			// Refused otherwise, or not answered: the party may still be
			// there, in silence. The call is lost: say so.
			bye, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = l.Hangup(bye)
			cancel()
		}
		return nil, fmt.Errorf("sipadapter: takeover re-INVITE: %w", err)
	}
	return l, nil
}

// Handoff implements park.Portable: what another node needs to continue
// the leg (handoff), as the lot keeps it in the call's record.
func (l *callLeg) Handoff() ([]byte, error) {
	h, err := l.handoff()
	if err != nil {
		return nil, err
	}
	return h.marshal(), nil
}

// Forget implements park.Portable: another node continues the call, so the
// leg stops its music and closes without a BYE; the dialog is that node's.
func (l *callLeg) Forget() {
	l.log.Debug("parked leg forgotten: another node continues its call", "party", l.party)
	l.Close()
}

// Adopt continues here a call another node of the cluster parked, for
// park.Config.Adopter (a host sets it as it sets the Dialer): from the
// call's handoff it rebuilds the party's dialog and sends the party a
// re-INVITE from this node, so that its music comes from here (adopt). The
// lot then holds the leg in the call's old orbit. An unusable handoff, or
// a party that refuses or does not answer, is the error: the lot ends the
// call as lost.
func (e *Engine) Adopt(ctx context.Context, c *park.Call) (park.Leg, error) {
	info := c.Info()
	h, err := parseHandoff(info.Handoff)
	if err != nil {
		return nil, err
	}
	if err := e.ports.reserve(); err != nil { // for its recall, as parkLeg keeps
		return nil, err
	}
	l, err := e.adopt(ctx, h, info.Party)
	if err != nil {
		e.ports.unreserve()
		return nil, err
	}
	e.mu.Lock()
	e.parked[c.ID()] = &parkedCall{}
	e.mu.Unlock()
	if !l.SetParked(c) {
		// The party hung up right after answering: that is the call's end.
		c.Abandon()
	}
	e.log.Info("call taken over", "orbit", c.Orbit(), "park_id", c.ID(), "party", info.Party, "from", info.Node)
	return l, nil
}
