package parktest

import (
	crand "crypto/rand"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// dialog is one SIP dialog (RFC 3261 §12) as the phone sees it, whichever
// side created it: what every request inside it needs (Call-ID, tags, the
// remote target, the route set, CSeq numbers). The phone builds in-dialog
// requests from it itself rather than through sipgo's dialog sessions: those
// are one-sided (a UAS session cannot send a re-INVITE and ACK its 2xx) and
// ReadInvite rewrites the To tag of re-INVITEs.
type dialog struct {
	callID    string
	localTag  string
	local     sip.Uri // our address in From (as UAC) or To (as UAS)
	remote    sip.Uri // the peer's address in the other of the two
	transport string  // "UDP" or "TCP"
	contact   *sip.ContactHeader

	mu           sync.Mutex
	remoteTag    string
	target       sip.Uri   // the peer's Contact: where in-dialog requests go
	routes       []sip.Uri // the route set, in Route header order
	localSeq     uint32
	remoteSeq    uint32
	hasRemoteSeq bool
}

// newToken returns a random identifier for Call-IDs and tags: 26 base32
// characters, 130 bits of crypto randomness.
func newToken() string { return crand.Text() }

// firstSeq is a random initial CSeq below 2^31 as RFC 3261 §8.1.1.5 asks,
// kept small so a long test can never overflow it.
func firstSeq() uint32 { return 1 + rand.Uint32N(1<<15) }

// newUACDialog starts the dialog of a request the phone sends out of any
// dialog (INVITE, SUBSCRIBE): fresh Call-ID and local tag, the target both as
// remote address and as first remote target.
func (p *Phone) newUACDialog(target sip.Uri) *dialog {
	t := *target.Clone()
	t.Headers = nil
	return &dialog{
		callID:    newToken(),
		localTag:  newToken(),
		local:     *p.uri.Clone(),
		remote:    t,
		transport: p.transport,
		contact:   p.contact.Clone(),
		target:    t,
		localSeq:  firstSeq(),
	}
}

// newUASDialog builds the dialog a received request (INVITE, SUBSCRIBE)
// creates, with a new local tag for our responses (§12.1.1).
func (p *Phone) newUASDialog(req *sip.Request) *dialog {
	d := &dialog{
		callID:    req.CallID().Value(),
		localTag:  newToken(),
		local:     *req.To().Address.Clone(),
		remote:    *req.From().Address.Clone(),
		transport: p.transport,
		contact:   p.contact.Clone(),
		localSeq:  firstSeq(),
	}
	d.remoteTag, _ = req.From().Params.Get("tag")
	if c := req.Contact(); c != nil {
		d.target = *c.Address.Clone()
	} else {
		d.target = *req.From().Address.Clone()
	}
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, *rr.Address.Clone())
		}
	}
	d.remoteSeq, d.hasRemoteSeq = req.CSeq().SeqNo, true
	return d
}

// key identifies the dialog among the phone's: the Call-ID and our tag,
// which alone we chose and so is unique.
func (d *dialog) key() string { return dialogKey(d.callID, d.localTag) }

func dialogKey(callID, localTag string) string { return callID + "\x00" + localTag }

// establish completes a UAC dialog from the 2xx that confirmed it (§12.1.2):
// the peer's tag, its Contact as remote target, the Record-Route reversed as
// route set.
func (d *dialog) establish(res *sip.Response) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.remoteTag, _ = res.To().Params.Get("tag")
	if c := res.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
	d.routes = d.routes[:0]
	for _, h := range res.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			d.routes = append(d.routes, *rr.Address.Clone())
		}
	}
	slices.Reverse(d.routes)
}

// learnPeer fills in the peer's tag and Contact from a NOTIFY that arrived
// before the 2xx to our SUBSCRIBE (RFC 6665 §4.1.2.4 lets it create the
// dialog).
func (d *dialog) learnPeer(req *sip.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.remoteTag != "" {
		return
	}
	d.remoteTag, _ = req.From().Params.Get("tag")
	if c := req.Contact(); c != nil {
		d.target = *c.Address.Clone()
	}
}

// peerTag returns the remote tag, empty until the dialog is established.
func (d *dialog) peerTag() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.remoteTag
}

// updateTarget applies a target refresh (a re-INVITE or its 2xx carrying a
// new Contact, §12.2).
func (d *dialog) updateTarget(c *sip.ContactHeader) {
	if c == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.target = *c.Address.Clone()
}

// acceptRemoteSeq checks the CSeq of a request from the peer (§12.2.2):
// lower than the last one means out of order, to be answered 500.
func (d *dialog) acceptRemoteSeq(seq uint32) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hasRemoteSeq && seq < d.remoteSeq {
		return false
	}
	d.remoteSeq, d.hasRemoteSeq = seq, true
	return true
}

// newRequest builds the next request of the dialog (§12.2.1.1) with a fresh
// CSeq number; Via is added when it is sent.
func (d *dialog) newRequest(method sip.RequestMethod) *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.localSeq++
	return d.buildLocked(method, d.localSeq)
}

// ack builds the ACK for the 2xx to our INVITE numbered seq (§13.2.2.4).
func (d *dialog) ack(seq uint32) *sip.Request {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.buildLocked(sip.ACK, seq)
}

func (d *dialog) buildLocked(method sip.RequestMethod, seq uint32) *sip.Request {
	req := sip.NewRequest(method, *d.target.Clone())
	from := &sip.FromHeader{Address: *d.local.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", d.localTag)
	to := &sip.ToHeader{Address: *d.remote.Clone(), Params: sip.NewParams()}
	if d.remoteTag != "" {
		to.Params.Add("tag", d.remoteTag)
	}
	callID := sip.CallIDHeader(d.callID)
	maxForwards := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	req.AppendHeader(&maxForwards)
	for _, r := range d.routes {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	req.AppendHeader(d.contact.Clone())
	req.SetTransport(d.transport)
	req.SetBody(nil)
	return req
}

// fill completes a request a test built by hand for this dialog (Call.Send):
// each dialog header it lacks is added, the ones it has are left alone, so
// that a test can send a deliberately odd request.
func (d *dialog) fill(req *sip.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	model := d.buildLocked(req.Method, 0)
	if req.Recipient.Host == "" {
		req.Recipient = *d.target.Clone()
	}
	for _, name := range []string{"From", "To", "Call-ID", "Max-Forwards", "Contact"} {
		if req.GetHeader(name) == nil {
			req.AppendHeader(sip.HeaderClone(model.GetHeader(name)))
		}
	}
	if req.CSeq() == nil {
		d.localSeq++
		req.AppendHeader(&sip.CSeqHeader{SeqNo: d.localSeq, MethodName: req.Method})
	}
	if req.GetHeader("Route") == nil {
		for _, h := range model.GetHeaders("Route") {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	if req.ContentLength() == nil {
		req.SetBody(req.Body())
	}
	req.SetTransport(d.transport)
}

// replaces returns the Replaces header value (RFC 3891 §6.1) that names this
// dialog to the peer: to-tag is the peer's own tag, from-tag ours.
func (d *dialog) replaces() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	b.WriteString(d.callID)
	b.WriteString(";to-tag=")
	b.WriteString(d.remoteTag)
	b.WriteString(";from-tag=")
	b.WriteString(d.localTag)
	return b.String()
}
