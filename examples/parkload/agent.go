package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/internal/siptransport"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// agent is the tool's one SIP user agent: a sipgo UA, client and server on
// one socket of -local, with a dialog cache for every call it places. All
// workers and calls share it, as the phones behind one PBX trunk share
// its signalling address.
type agent struct {
	cfg     *config
	stack   *siptransport.Stack
	client  *sipgo.Client
	dialogs *sipgo.DialogClientCache
	// answered holds the dialogs of calls the server placed to us and we
	// answered: soak mode's recalls, the tool being the parker.
	answered *sipgo.DialogServerCache
	contact  sip.ContactHeader
	params   sip.HeaderParams

	// Soak mode's hooks: recalls by the Request-URI user they ring (the
	// parker a call named), and REFER progress by the referring call's
	// Call-ID. A hook answers the request itself.
	recalls  sync.Map // string -> func(*sip.Request, sip.ServerTransaction)
	notifies sync.Map // string -> func(*sip.Request)

	// held are the calls the server answered that have not ended yet, by
	// Call-ID: what a run that stops leaves the server holding, hung up by
	// hangupHeld. lateAnswers are the ACK and BYE of 2xx answers that came
	// after the tool gave up waiting (hangupLate), in flight.
	held sync.Map // string -> *sipgo.DialogClientSession
	// targets are the remote targets the server's re-INVITEs refreshed
	// (RFC 3261 §12.2.2), by Call-ID: after a takeover the call's BYE goes
	// to the node that holds it now. sipgo's dialog keeps the first one.
	targets     sync.Map // string -> sip.Uri
	ended       sync.Map // Call-ID -> time.Time: calls of held that ended less than 64×T1 ago
	lateAnswers sync.WaitGroup
	// lateMu orders lateAnswers' Go and Wait: a 2xx retransmitted while
	// hangupHeld waits would otherwise Add to a WaitGroup being waited on
	// (a race the detector reports).
	lateMu     sync.Mutex
	lateHungUp atomic.Uint64

	// What the server sent us, for the report.
	inBye, inByeUnknown, inOptions, inNotify, inMessage, inInvite, inOther atomic.Uint64
	inReInvite, strayResponses                                             atomic.Uint64
}

// inbound is the count of requests the server sent the tool, by method.
type inbound struct {
	Bye            uint64 `json:"bye"`
	ByeNoDialog    uint64 `json:"bye_no_dialog"`
	Options        uint64 `json:"options"`
	Notify         uint64 `json:"notify"`
	Message        uint64 `json:"message"`
	ReInvite       uint64 `json:"reinvite"`
	Invite         uint64 `json:"invite"`
	Other          uint64 `json:"other"`
	StrayResponses uint64 `json:"stray_responses"`
}

func (a *agent) inbound() inbound {
	return inbound{
		Bye: a.inBye.Load(), ByeNoDialog: a.inByeUnknown.Load(), Options: a.inOptions.Load(),
		Notify: a.inNotify.Load(), Message: a.inMessage.Load(), ReInvite: a.inReInvite.Load(), Invite: a.inInvite.Load(),
		Other: a.inOther.Load(), StrayResponses: a.strayResponses.Load(),
	}
}

// newAgent binds a free SIP port on -local (UDP and TCP, as a SIP host
// does) and starts serving it. The stack closes as the park server's does:
// a request the agent reads just before close and answers just after
// cannot make sipgo open a socket that outlives it (siptransport.Stack).
func newAgent(cfg *config, logw io.Writer) (*agent, error) {
	log := slog.New(slog.DiscardHandler)
	if cfg.verbose {
		log = slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "sipgo")
	}
	a := &agent{cfg: cfg}
	stack, err := siptransport.Listen(siptransport.Options{
		Addr:            netip.AddrPortFrom(cfg.local, 0),
		UserAgent:       "parkload",
		Logger:          log,
		OnStrayResponse: a.onStrayResponse,
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.local, err)
	}
	a.stack = stack
	if cfg.transport != "udp" {
		a.params = sip.NewParams()
		a.params.Add("transport", "tcp")
	}
	contact := sip.ContactHeader{Address: a.uriAt(stack.Addr, "parkload")}
	a.contact = contact
	a.client = stack.Client
	a.dialogs = sipgo.NewDialogClientCache(a.client, contact)
	a.answered = sipgo.NewDialogServerCache(a.client, contact)

	srv := stack.Server
	srv.OnBye(a.onBye)
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		// Only the ACKs of our own 2xx (to a recall) concern a dialog.
		_ = a.answered.ReadAck(req, tx)
	})
	srv.OnOptions(a.ok(&a.inOptions))
	srv.OnNotify(a.onNotify)
	srv.OnMessage(a.ok(&a.inMessage))
	srv.OnInvite(a.onInvite)
	srv.OnNoRoute(func(req *sip.Request, tx sip.ServerTransaction) {
		a.inOther.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil))
	})
	if err := stack.Serve(); err != nil {
		stack.Close()
		return nil, err
	}
	return a, nil
}

// close stops serving and frees the user agent.
func (a *agent) close() { a.stack.Close() }

func (a *agent) ok(n *atomic.Uint64) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		n.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
		tx.Terminate()
	}
}

// onBye answers the server's BYE to one of our calls (a parked call whose
// retriever hung up, or one it ended itself); 481 for a dialog we do not
// have.
//
// The tool's server transactions end as soon as they are answered, where
// sipgo would keep each one 32 s (Timer J) on UDP to answer a
// retransmitted request again: at 1,000 cycles a second that is 64,000
// transactions alive, and their timers and memory cost the tool about a
// tenth of its CPU. The price: a BYE retransmitted because our 200 was
// lost gets a 481 (counted as bye_no_dialog), which on loopback happens
// only under overload.
func (a *agent) onBye(req *sip.Request, tx sip.ServerTransaction) {
	a.inBye.Add(1)
	if id := req.CallID(); id != nil {
		a.targets.Delete(id.Value())
	}
	if err := a.dialogs.ReadBye(req, tx); err != nil && a.answered.ReadBye(req, tx) != nil {
		a.inByeUnknown.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil))
	}
	tx.Terminate()
}

// onInvite answers a re-INVITE on one of our calls (the server turns a
// parked call's one-way music into two-way audio when it is retrieved) with
// our own SDP again: the call's media never changes. A new INVITE is a
// recall, which rings the parker: soak mode names one per call
// (Referred-By) and hooks its user; without a hook it is declined, since
// the cycle and hold modes name no parker and one here is the server's
// mistake.
func (a *agent) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		a.inInvite.Add(1)
		if h, ok := a.recalls.Load(req.Recipient.User); ok {
			h.(func(*sip.Request, sip.ServerTransaction))(req, tx)
			return
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, 603, "Decline", nil))
		return
	}
	a.inReInvite.Add(1)
	var (
		sdp   []byte
		seen  func(*sip.Request, sip.ServerTransaction) error
		ended <-chan struct{}
	)
	if d, err := a.dialogs.MatchRequestDialog(req); err == nil {
		sdp, seen, ended = d.InviteRequest.Body(), d.ReadRequest, d.Context().Done()
		if c := req.Contact(); c != nil {
			a.targets.Store(req.CallID().Value(), *c.Address.Clone())
		}
	} else if d, err := a.answered.MatchDialogRequest(req); err == nil && d.InviteResponse != nil {
		sdp, seen, ended = d.InviteResponse.Body(), d.ReadRequest, d.Context().Done()
	} else {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil))
		return
	}
	if !a.delayReinvite(ended) {
		// RFC 3261 §15.1.2: the BYE ended the call; the request pending
		// in it is answered 487.
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusRequestTerminated, "Request Terminated", nil))
		tx.Terminate()
		return
	}
	if err := seen(req, tx); err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
		return
	}
	res := sip.NewSDPResponseFromRequest(req, sdp)
	res.AppendHeader(&a.contact)
	_ = tx.Respond(res)
	tx.Terminate()
}

// delayReinvite waits -reinvite-delay before a re-INVITE is answered;
// false if the call ended first.
func (a *agent) delayReinvite(ended <-chan struct{}) bool {
	if a.cfg.reinviteDelay <= 0 {
		return true
	}
	t := time.NewTimer(a.cfg.reinviteDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ended:
		return false
	}
}

// onNotify answers every NOTIFY 200 (the server's REFER progress, BLF) and
// hands REFER progress to the hook of its call, if any.
func (a *agent) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	a.inNotify.Add(1)
	if id := req.CallID(); id != nil {
		if h, ok := a.notifies.Load(id.Value()); ok {
			h.(func(*sip.Request))(req)
		}
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	tx.Terminate()
}

// userURI is a URI on the tool's own SIP address: the parker soak mode
// names, which the server's recall rings.
func (a *agent) userURI(user string) string {
	u := a.uriAt(a.stack.Addr, user)
	return u.String()
}

// uri is the server's URI for a user part (the park extension, an orbit).
func (a *agent) uri(user string) sip.Uri { return a.uriAt(a.cfg.target, user) }

// uriAt is a user part's URI at one node of a cluster, or at the tool's
// own address.
func (a *agent) uriAt(at netip.AddrPort, user string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: at.Addr().String(), Port: int(at.Port()), UriParams: a.params}
}

// invite places a call to user with an SDP offer and waits for its final
// answer, at most -timeout. A non-2xx answer is a *sipgo.ErrDialogResponse.
func (a *agent) invite(ctx context.Context, user string, offer []byte, headers ...sip.Header) (*sipgo.DialogClientSession, *sip.Response, error) {
	return a.inviteAt(ctx, a.cfg.target, user, offer, headers...)
}

// inviteAt is invite to a given node of a cluster.
func (a *agent) inviteAt(ctx context.Context, at netip.AddrPort, user string, offer []byte, headers ...sip.Header) (*sipgo.DialogClientSession, *sip.Response, error) {
	// The cause tells WaitAnswer to give up at once instead of sending a
	// CANCEL and waiting out Timer B for a server that does not answer.
	ctx, cancel := context.WithTimeoutCause(ctx, a.cfg.timeout, sipgo.WaitAnswerForceCancelErr)
	defer cancel()
	d, err := a.dialogs.Invite(ctx, a.uriAt(at, user), offer, append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, headers...)...)
	if err != nil {
		return nil, nil, err
	}
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		d.Close()
		return nil, nil, err
	}
	a.hold(d)
	return d, d.InviteResponse, nil
}

// hold files an answered call in held until its dialog ends (its BYE,
// either way).
func (a *agent) hold(d *sipgo.DialogClientSession) {
	id := d.InviteRequest.CallID().Value()
	a.held.Store(id, d)
	context.AfterFunc(d.Context(), func() {
		a.held.CompareAndDelete(id, d)
		// Its 2xx may still be resent while the server waits for an ACK
		// that crossed the BYE: a retransmission, not a late answer.
		at := time.Now()
		a.ended.Store(id, at)
		time.AfterFunc(64*sip.T1, func() { a.ended.CompareAndDelete(id, at) })
	})
}

// hangupHeld ends every call the server still holds for the tool, once a
// run has stopped: a call whose BYE failed or was never sent (the run
// ended mid-cycle, a step timed out) would otherwise stay connected, and a
// server shutting down would wait for it until its drain time ran out. The
// ACK and BYE of late answers in flight are waited for too. It returns how
// many calls it hung up, late answers included.
func (a *agent) hangupHeld(ctx context.Context) uint64 {
	var wg sync.WaitGroup
	var n atomic.Uint64
	a.held.Range(func(_, v any) bool {
		d := v.(*sipgo.DialogClientSession)
		wg.Go(func() {
			if d.LoadState() < sip.DialogStateConfirmed {
				// Answered but never acknowledged (the ACK failed, or the
				// run ended between the two): the ACK first, as §15 asks.
				_ = d.Ack(ctx)
			}
			if err := a.bye(ctx, d); err == nil || crossedBye(err) {
				n.Add(1)
			}
			d.Close()
		})
		return true
	})
	wg.Wait()
	a.lateMu.Lock()
	a.lateAnswers.Wait()
	a.lateMu.Unlock()
	return n.Load() + a.lateHungUp.Swap(0)
}

// crossedBye reports whether a BYE was answered 481 because the server
// had ended the call itself: hanging up both calls of a bridge at once,
// the server ends the second when the first BYE reaches it, and its BYE
// crosses ours. The call is over either way.
func crossedBye(err error) bool {
	var res sipgo.ErrDialogResponse
	return errors.As(err, &res) && res.Res.StatusCode == sip.StatusCallTransactionDoesNotExists
}

// onStrayResponse counts responses no transaction of ours waits for. A 2xx
// to an INVITE the tool gave up on (its -timeout ran out first) is a call
// the server has connected: it is acknowledged and hung up at once (RFC
// 3261 §13.2.2.4 and §15), or the server would hold it for the ACK's 32 s
// and a draining server until its drain time ran out. A 2xx of a call the
// tool holds is a retransmission, left to its dialog.
func (a *agent) onStrayResponse(res *sip.Response) {
	a.strayResponses.Add(1)
	cseq, callID := res.CSeq(), res.CallID()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE || callID == nil || res.Contact() == nil {
		return
	}
	if _, ok := a.held.Load(callID.Value()); ok {
		return
	}
	if _, ok := a.ended.Load(callID.Value()); ok {
		_ = a.client.WriteRequest(a.inDialog(res, sip.ACK, res.CSeq().SeqNo)) // the call is over; only the ACK it waits for
		return
	}
	a.lateMu.Lock()
	defer a.lateMu.Unlock()
	a.lateAnswers.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
		defer cancel()
		if a.ackAndBye(ctx, res) == nil {
			a.lateHungUp.Add(1)
		}
	})
}

// ackAndBye acknowledges res, a 2xx to an INVITE of ours no dialog holds,
// and ends the call it set up with a BYE.
func (a *agent) ackAndBye(ctx context.Context, res *sip.Response) error {
	seq := res.CSeq().SeqNo
	if err := a.client.WriteRequest(a.inDialog(res, sip.ACK, seq)); err != nil {
		return err
	}
	bye, err := a.client.Do(ctx, a.inDialog(res, sip.BYE, seq+1))
	if err != nil {
		return err
	}
	if !bye.IsSuccess() {
		return fmt.Errorf("BYE answered %d %s", bye.StatusCode, bye.Reason)
	}
	return nil
}

// inDialog is a request in the dialog res, a 2xx to an INVITE of ours,
// set up.
func (a *agent) inDialog(res *sip.Response, method sip.RequestMethod, seq uint32) *sip.Request {
	req := sip.NewRequest(method, *res.Contact().Address.Clone())
	req.AppendHeader(sip.HeaderClone(res.From()))
	req.AppendHeader(sip.HeaderClone(res.To()))
	req.AppendHeader(sip.HeaderClone(res.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	req.AppendHeader(sip.HeaderClone(&a.contact))
	if a.cfg.transport == "tcp" {
		req.SetTransport("TCP")
	}
	return req
}

// bye ends a call from our side, at most -timeout.
func (a *agent) bye(ctx context.Context, d *sipgo.DialogClientSession) error {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.timeout)
	defer cancel()
	if t, ok := a.targets.LoadAndDelete(d.InviteRequest.CallID().Value()); ok {
		// Route, From, To, Call-ID and CSeq come from the dialog.
		return d.WriteBye(ctx, sip.NewRequest(sip.BYE, t.(sip.Uri)))
	}
	return d.Bye(ctx)
}

// ping sends OPTIONS until the server answers anything (even 405) or wait
// runs out: false means nothing listens at -target.
func (a *agent) ping(ctx context.Context, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		req := sip.NewRequest(sip.OPTIONS, a.uri(""))
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		res, err := a.client.Do(rctx, req)
		cancel()
		if err == nil && res != nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

// failureKind names why a request failed: its final status code, or
// "timeout", or "transport" for anything else (a refused connection, an
// unparsable answer).
func failureKind(err error) string {
	var pr *sipgo.ErrDialogResponse
	if errors.As(err, &pr) && pr.Res != nil {
		return strconv.Itoa(pr.Res.StatusCode)
	}
	var vr sipgo.ErrDialogResponse
	if errors.As(err, &vr) && vr.Res != nil {
		return strconv.Itoa(vr.Res.StatusCode)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, sip.ErrTransactionTimeout) {
		return "timeout"
	}
	return "transport"
}
