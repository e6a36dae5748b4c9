package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
)

// Dialog is an INVITE dialog of either side: one the host answered (UAS) or
// one it placed (UAC). A call leg of the park server or of a host PBX sends
// its in-dialog requests (re-INVITE, NOTIFY, BYE) through it without caring
// which side began the dialog. The zero Dialog is not usable.
type Dialog struct {
	uas *sipgo.DialogServerSession
	uac *sipgo.DialogClientSession
}

// ServerDialog is the dialog of an INVITE the host answered.
func ServerDialog(s *sipgo.DialogServerSession) Dialog { return Dialog{uas: s} }

// ClientDialog is the dialog of an INVITE the host sent and had answered.
func ClientDialog(s *sipgo.DialogClientSession) Dialog { return Dialog{uac: s} }

// ServerSession returns the session of an INVITE the host answered, to
// send its responses and read its ACK; nil for a dialog the host placed.
func (d Dialog) ServerSession() *sipgo.DialogServerSession { return d.uas }

// Key is the dialog's identity as RequestKey computes it for the requests
// inside it: Call-ID, our tag, their tag.
func (d Dialog) Key() string {
	if d.uas != nil {
		// ReadInvite wrote our tag into its copy of the INVITE.
		ours, _ := d.uas.InviteRequest.To().Params.Get("tag")
		theirs, _ := d.uas.InviteRequest.From().Params.Get("tag")
		return DialogKey(d.uas.InviteRequest.CallID().Value(), ours, theirs)
	}
	ours, _ := d.uac.InviteRequest.From().Params.Get("tag")
	theirs, _ := d.uac.InviteResponse.To().Params.Get("tag")
	return DialogKey(d.uac.InviteRequest.CallID().Value(), ours, theirs)
}

// NewRequest starts an in-dialog request to the peer's remote target (its
// Contact); Do fills in the dialog's headers.
func (d Dialog) NewRequest(method sip.RequestMethod) *sip.Request {
	var target sip.Uri
	var c *sip.ContactHeader
	if d.uas != nil {
		c = d.uas.InviteRequest.Contact()
	} else {
		c = d.uac.InviteResponse.Contact()
	}
	if c != nil {
		target = *c.Address.Clone()
	}
	return sip.NewRequest(method, target)
}

// Do sends an in-dialog request and waits for its final response.
func (d Dialog) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if d.uas != nil {
		return responseOf(d.uas.Do(ctx, req))
	}
	return responseOf(d.uac.Do(ctx, req))
}

// ErrNoResponse means a transaction ended without a final response and
// without an error of its own.
var ErrNoResponse = errors.New("sipadapter: transaction ended without a response")

// responseOf guards sipgo's Do, which returns a nil response and a nil error
// when the transaction's response channel closes under it (a transaction
// terminated while it waited).
func responseOf(res *sip.Response, err error) (*sip.Response, error) {
	if err == nil && res == nil {
		return nil, ErrNoResponse
	}
	return res, err
}

// ClientDo is sipgo's Client.Do with that guard: a nil response always comes
// with an error.
func ClientDo(ctx context.Context, c *sipgo.Client, req *sip.Request, opts ...sipgo.ClientRequestOption) (*sip.Response, error) {
	return responseOf(c.Do(ctx, req, opts...))
}

// WriteRequest sends an in-dialog request that has no response: the ACK of
// a re-INVITE.
func (d Dialog) WriteRequest(req *sip.Request) error {
	if d.uas != nil {
		return d.uas.WriteRequest(req)
	}
	return d.uac.WriteRequest(req)
}

// Bye ends the dialog from our side.
func (d Dialog) Bye(ctx context.Context) error {
	if d.uas != nil {
		return d.uas.Bye(ctx)
	}
	return d.uac.Bye(ctx)
}

// ReadBye answers the peer's BYE and ends the dialog.
func (d Dialog) ReadBye(req *sip.Request, tx sip.ServerTransaction) error {
	if d.uas != nil {
		return d.uas.ReadBye(req, tx)
	}
	return d.uac.ReadBye(req, tx)
}

// Close frees the dialog's session.
func (d Dialog) Close() {
	if d.uas != nil {
		d.uas.Close()
	} else {
		d.uac.Close()
	}
}

// DialogKey names a dialog by Call-ID and tags, ours first: the key hosts
// file their legs under, so that RequestKey finds them.
func DialogKey(callID, ours, theirs string) string {
	return callID + "\x00" + ours + "\x00" + theirs
}

// RequestKey is the DialogKey of the dialog an in-dialog request belongs to:
// To carries our tag and From theirs, whichever side began the dialog. False
// for a request outside any dialog.
func RequestKey(req *sip.Request) (string, bool) {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		return "", false
	}
	ours, _ := to.Params.Get("tag")
	theirs, _ := from.Params.Get("tag")
	if ours == "" {
		return "", false
	}
	return DialogKey(callID.Value(), ours, theirs), true
}

// NotifyRefer sends a NOTIFY of a REFER's implicit subscription (RFC 3515
// §2.4.4) inside d: sipfrag is the body (StatusSipfrag, ParkedSipfrag),
// final ends the subscription. The event id is the REFER's CSeq, since a
// dialog may carry several REFERs. A 481 to the final NOTIFY is not an
// error: the referrer may have hung up already.
func NotifyRefer(ctx context.Context, d Dialog, referCSeq uint32, sipfrag string, final bool) error {
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req := d.NewRequest(sip.NOTIFY)
	req.AppendHeader(sip.NewHeader("Event", fmt.Sprintf("refer;id=%d", referCSeq)))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(sipfrag))
	res, err := d.Do(ctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() && !(final && res.StatusCode == sip.StatusCallTransactionDoesNotExists) {
		return &RejectedError{Code: res.StatusCode, Reason: res.Reason}
	}
	return nil
}

// ListenPair binds UDP and TCP on one address, as SIP serves both on the
// same port; with port 0 it looks for a port free in both.
func ListenPair(want netip.AddrPort) (*net.UDPConn, net.Listener, error) {
	for range 20 {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(want))
		if err != nil {
			return nil, nil, fmt.Errorf("sipadapter: listen udp %s: %w", want, err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", netip.AddrPortFrom(want.Addr(), uint16(port)).String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if want.Port() != 0 {
			return nil, nil, fmt.Errorf("sipadapter: listen tcp %s: %w", want, err)
		}
	}
	return nil, nil, fmt.Errorf("sipadapter: no port free for both UDP and TCP on %s", want.Addr())
}

// OfferStatus is the answer to an INVITE whose SDP offer was refused: 400
// for a body that cannot be parsed, 488 for one without a usable audio
// stream, or no offer at all.
func OfferStatus(err error, body []byte) (int, string) {
	if errors.Is(err, media.ErrBadSDP) && len(body) > 0 {
		return sip.StatusBadRequest, "Bad Request"
	}
	return sip.StatusNotAcceptableHere, "Not Acceptable Here"
}
