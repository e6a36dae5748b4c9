package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
)

// sipDialog is an INVITE dialog of either side: one the host answered (UAS) or
// one it placed (UAC). A call leg of the park server or of a host PBX sends
// its in-dialog requests (re-INVITE, NOTIFY, BYE) through it without caring
// which side began the dialog. The zero sipDialog is not usable.
type sipDialog struct {
	uas *sipgo.DialogServerSession
	uac *sipgo.DialogClientSession
	// client sends what the sessions cannot build right: the ACK of a
	// re-INVITE answered after a later request (AckInvite).
	client *sipgo.Client
	// adopted marks a dialog continued from another node's handoff: its
	// client session never sent the INVITE, so it has no transaction for
	// sipgo's Bye and ReadBye to end.
	adopted bool
}

// serverDialog is the dialog of an INVITE the host answered with client's
// dialog user agent.
func serverDialog(s *sipgo.DialogServerSession, client *sipgo.Client) sipDialog {
	return sipDialog{uas: s, client: client}
}

// clientDialog is the dialog of an INVITE the host sent and had answered.
func clientDialog(s *sipgo.DialogClientSession) sipDialog {
	return sipDialog{uac: s, client: s.UA.Client}
}

// ServerSession returns the session of an INVITE the host answered, to
// send its responses and read its ACK; nil for a dialog the host placed.
func (d sipDialog) ServerSession() *sipgo.DialogServerSession { return d.uas }

// Key is the dialog's identity as requestKey computes it for the requests
// inside it: Call-ID, our tag, their tag.
func (d sipDialog) Key() string {
	if d.uas != nil {
		// ReadInvite wrote our tag into its copy of the INVITE.
		ours, _ := d.uas.InviteRequest.To().Params.Get("tag")
		theirs, _ := d.uas.InviteRequest.From().Params.Get("tag")
		return dialogKey(d.uas.InviteRequest.CallID().Value(), ours, theirs)
	}
	ours, _ := d.uac.InviteRequest.From().Params.Get("tag")
	theirs, _ := d.uac.InviteResponse.To().Params.Get("tag")
	return dialogKey(d.uac.InviteRequest.CallID().Value(), ours, theirs)
}

// NewRequest starts an in-dialog request to the peer's remote target (its
// Contact); Do fills in the dialog's headers.
func (d sipDialog) NewRequest(method sip.RequestMethod) *sip.Request {
	target, _ := d.RemoteTarget()
	return sip.NewRequest(method, target)
}

// RemoteTarget is the peer's Contact URI, where in-dialog requests go: the
// device on the other end.
func (d sipDialog) RemoteTarget() (sip.Uri, bool) {
	var c *sip.ContactHeader
	if d.uas != nil {
		c = d.uas.InviteRequest.Contact()
	} else {
		c = d.uac.InviteResponse.Contact()
	}
	if c == nil {
		return sip.Uri{}, false
	}
	return *c.Address.Clone(), true
}

// overPeerConnection has a request of a dialog the host answered over TLS
// leave on the connection the peer's INVITE came in on (connection reuse,
// RFC 5923), not on one opened anew to its Contact: a phone's own TLS
// listener often has a certificate nobody can check (self-signed), or sits
// behind a NAT. When that connection has closed, sipgo dials the address
// and the request fails as an unreachable peer's would.
func (d sipDialog) overPeerConnection(req *sip.Request) {
	if d.uas == nil || !strings.EqualFold(d.uas.InviteRequest.Transport(), "TLS") {
		return
	}
	if src := d.uas.InviteRequest.Source(); src != "" {
		req.SetDestination(src)
	}
}

// Do sends an in-dialog request and waits for its final response.
func (d sipDialog) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if d.uas != nil {
		d.overPeerConnection(req)
		return responseOf(d.uas.Do(ctx, req))
	}
	return responseOf(d.uac.Do(ctx, req))
}

// Start sends an in-dialog request in a new client transaction and returns
// at once: the request has its CSeq and is on its way. Read the answer from
// the transaction (finalResponse) and Terminate it when done.
func (d sipDialog) Start(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	if d.uas != nil {
		d.overPeerConnection(req)
		return d.uas.TransactionRequest(ctx, req)
	}
	return d.uac.TransactionRequest(ctx, req)
}

// finalResponse waits for tx's final response, skipping provisional ones:
// what sipgo's Do does, for a transaction begun with Start.
func finalResponse(ctx context.Context, tx sip.ClientTransaction) (*sip.Response, error) {
	for {
		select {
		case res := <-tx.Responses():
			if res == nil {
				return nil, errNoResponse
			}
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, err
			}
			return nil, errNoResponse
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// AckInvite acknowledges res, a 2xx to invite, our re-INVITE as sent
// (RFC 3261 §13.2.2.4). The ACK carries the INVITE's CSeq and goes where the
// INVITE went, even after later requests of ours (a BYE sent while the
// re-INVITE was pending): the sessions' WriteRequest would give it the
// dialog's latest CSeq instead, an ACK the party cannot match.
func (d sipDialog) AckInvite(invite *sip.Request, res *sip.Response) error {
	ack := sip.NewRequest(sip.ACK, *invite.Recipient.Clone())
	ack.SipVersion = invite.SipVersion
	for _, h := range invite.GetHeaders("Route") {
		ack.AppendHeader(sip.HeaderClone(h))
	}
	maxForwards := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&maxForwards)
	ack.AppendHeader(sip.HeaderClone(invite.From()))
	to := sip.HeaderClone(invite.To())
	if rt := res.To(); rt != nil {
		to = sip.HeaderClone(rt)
	}
	ack.AppendHeader(to)
	ack.AppendHeader(sip.HeaderClone(invite.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: invite.CSeq().SeqNo, MethodName: sip.ACK})
	if c := invite.Contact(); c != nil {
		ack.AppendHeader(sip.HeaderClone(c))
	}
	ack.SetBody(nil)
	ack.SetTransport(invite.Transport())
	ack.SetDestination(invite.Destination())
	return d.client.WriteRequest(ack, func(c *sipgo.Client, r *sip.Request) error {
		sipgo.ClientRequestAddVia(c, r) // a new branch: the ACK of a 2xx is a transaction of its own
		return nil
	})
}

// errNoResponse means a transaction ended without a final response and
// without an error of its own.
var errNoResponse = errors.New("sipadapter: transaction ended without a response")

// responseOf guards sipgo's Do, which returns a nil response and a nil error
// when the transaction's response channel closes under it (a transaction
// terminated while it waited).
func responseOf(res *sip.Response, err error) (*sip.Response, error) {
	if err == nil && res == nil {
		return nil, errNoResponse
	}
	return res, err
}

// clientDo is sipgo's Client.Do with that guard: a nil response always comes
// with an error.
func clientDo(ctx context.Context, c *sipgo.Client, req *sip.Request, opts ...sipgo.ClientRequestOption) (*sip.Response, error) {
	return responseOf(c.Do(ctx, req, opts...))
}

// WriteRequest sends an in-dialog request that has no response: the ACK of
// a re-INVITE.
func (d sipDialog) WriteRequest(req *sip.Request) error {
	if d.uas != nil {
		d.overPeerConnection(req)
		return d.uas.WriteRequest(req)
	}
	return d.uac.WriteRequest(req)
}

// Bye ends the dialog from our side.
func (d sipDialog) Bye(ctx context.Context) error {
	switch {
	case d.uas != nil:
		// sipgo's Bye, with the BYE over the peer's own connection.
		inv := d.uas.InviteRequest
		bye := sip.NewRequest(sip.BYE, inv.Contact().Address)
		bye.SetTransport(inv.Transport())
		d.overPeerConnection(bye)
		return d.uas.WriteBye(ctx, bye)
	case d.adopted:
		res, err := d.Do(ctx, d.NewRequest(sip.BYE))
		if err != nil {
			return err
		}
		if !res.IsSuccess() {
			return &RejectedError{Code: res.StatusCode, Reason: res.Reason}
		}
		return nil
	}
	return d.uac.Bye(ctx)
}

// ReadBye answers the peer's BYE and ends the dialog.
func (d sipDialog) ReadBye(req *sip.Request, tx sip.ServerTransaction) error {
	switch {
	case d.uas != nil:
		return d.uas.ReadBye(req, tx)
	case d.adopted:
		// sipgo's would end the INVITE transaction this session never had.
		return tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	}
	return d.uac.ReadBye(req, tx)
}

// Close frees the dialog's session.
func (d sipDialog) Close() {
	if d.uas != nil {
		d.uas.Close()
	} else {
		d.uac.Close()
	}
}

// dialogKey names a dialog by Call-ID and tags, ours first: the key hosts
// file their legs under, so that requestKey finds them.
func dialogKey(callID, ours, theirs string) string {
	return callID + "\x00" + ours + "\x00" + theirs
}

// requestKey is the dialogKey of the dialog an in-dialog request belongs to:
// To carries our tag and From theirs, whichever side began the dialog. False
// for a request outside any dialog.
func requestKey(req *sip.Request) (string, bool) {
	callID, from, to := req.CallID(), req.From(), req.To()
	if callID == nil || from == nil || to == nil {
		return "", false
	}
	ours, _ := to.Params.Get("tag")
	theirs, _ := from.Params.Get("tag")
	if ours == "" {
		return "", false
	}
	return dialogKey(callID.Value(), ours, theirs), true
}

// notifyRefer sends a NOTIFY of a REFER's implicit subscription (RFC 3515
// §2.4.4) inside d: sipfrag is the body (statusSipfrag, parkedSipfrag),
// final ends the subscription. The event id is the REFER's CSeq, since a
// dialog may carry several REFERs. A 481 to the final NOTIFY is not an
// error: the referrer may have hung up already.
func notifyRefer(ctx context.Context, d sipDialog, referCSeq uint32, sipfrag string, final bool) error {
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

// offerStatus is the answer to an INVITE whose SDP offer was refused: 400
// for a body that cannot be parsed, 488 for one without a usable audio
// stream, or no offer at all.
func offerStatus(err error, body []byte) (int, string) {
	if errors.Is(err, media.ErrBadSDP) && len(body) > 0 {
		return sip.StatusBadRequest, "Bad Request"
	}
	return sip.StatusNotAcceptableHere, "Not Acceptable Here"
}
