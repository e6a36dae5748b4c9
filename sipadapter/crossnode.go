package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/park"
)

// A retrieve at this node for a call parked on another node of the cluster
// (CLUSTER.md point 2): forwarded there as a stateful proxy that does not
// Record-Route, so the dialog, its ACK and BYE and the media are with the
// node holding the call; or, for a proxy in front that follows redirects,
// a 302 to it.

// CrossNode is how the engine sends a retrieve on to the node of the
// cluster that holds the call (EngineConfig.CrossNode, -cross-node).
type CrossNode int

const (
	// CrossNodeProxy forwards the INVITE to the node holding the call and
	// relays its answers: the phone sees one retrieve, the dialog is with
	// that node. The default.
	CrossNodeProxy CrossNode = iota
	// CrossNodeRedirect answers 302 with a Contact at the node holding the
	// call, for a proxy in front (Kamailio) or a phone that follows it.
	CrossNodeRedirect
)

// String returns the name -cross-node takes.
func (c CrossNode) String() string {
	switch c {
	case CrossNodeProxy:
		return "proxy"
	case CrossNodeRedirect:
		return "redirect"
	}
	return "CrossNode(" + strconv.Itoa(int(c)) + ")"
}

// ParseCrossNode reads "proxy" or "redirect".
func ParseCrossNode(s string) (CrossNode, error) {
	switch s {
	case "proxy":
		return CrossNodeProxy, nil
	case "redirect":
		return CrossNodeRedirect, nil
	}
	return 0, fmt.Errorf("sipadapter: cross-node %q: want proxy or redirect", s)
}

// forwardedHeader marks an INVITE one node forwarded to another: the
// receiver serves it or refuses it, and never forwards it again, so two
// nodes that disagree about who holds an orbit cannot bounce a retrieve.
const forwardedHeader = "X-Callpark-Forwarded"

// crossNodeTimeout is how long a forwarded retrieve waits for the other
// node's first answer before the caller gets 480: a node that died holds
// its orbits until its lease runs out, and the retriever should not wait
// that long (CLUSTER.md 6: within 2 s).
const crossNodeTimeout = 1500 * time.Millisecond

// crossNode sends a retrieve on to the node of the cluster holding the call.
func (e *Engine) crossNode(req *sip.Request, tx sip.ServerTransaction, party string, where *park.ElsewhereError) {
	if req.GetHeader(forwardedHeader) != nil {
		// Forwarded here by a node that believed we hold it: we do not.
		e.log.Info("retrieve refused", "orbit", where.Orbit, "from", party, "status", 404, "why", "forwarded by another node, held by "+where.Node)
		e.reply(req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	host, portText, err := net.SplitHostPort(where.Addr)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || host == "" {
		e.log.Warn("retrieve refused: the node holding the call advertises no SIP address", "orbit", where.Orbit, "node", where.Node, "addr", where.Addr)
		e.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", warning("node "+where.Node+" holds the call but advertises no address"))
		return
	}
	target := sip.Uri{Scheme: "sip", User: string(where.Orbit), Host: host, Port: port}
	if e.cfg.CrossNode == CrossNodeRedirect {
		res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
		res.AppendHeader(&sip.ContactHeader{Address: target})
		if err := tx.Respond(res); err != nil {
			e.log.Debug("302 not sent", "err", err)
		}
		e.log.Info("retrieve redirected", "orbit", where.Orbit, "from", party, "node", where.Node, "to", target.String())
		return
	}
	e.forward(req, tx, party, where, target)
}

// forward is the stateful proxy of a retrieve (RFC 3261 §16): the INVITE
// goes to target with our Via on top and Max-Forwards one less, each answer
// comes back without that Via, a CANCEL from the caller is sent on, and a
// node that does not answer at all in crossNodeTimeout gets the caller a
// 480.
func (e *Engine) forward(req *sip.Request, tx sip.ServerTransaction, party string, where *park.ElsewhereError, target sip.Uri) {
	if mf := req.MaxForwards(); mf != nil && mf.Val() <= 1 {
		e.reply(req, tx, sip.StatusTooManyHops, "Too Many Hops")
		return
	}
	fwd := req.Clone()
	fwd.Recipient = target
	fwd.AppendHeader(sip.NewHeader(forwardedHeader, e.addr.String()))
	fwd.SetDestination(where.Addr)
	fwd.SetTransport(req.Transport())
	cancelled := make(chan struct{})
	if !tx.OnCancel(func(*sip.Request) { close(cancelled) }) {
		return // the caller cancelled already; sipgo answered 487
	}
	ctx, stop := context.WithCancel(e.callsCtx)
	defer stop()
	client, err := e.client.TransactionRequest(ctx, fwd, sipgo.ClientRequestAddVia, sipgo.ClientRequestDecreaseMaxForward)
	if err != nil {
		e.unreachableNode(req, tx, party, where, "cannot reach node "+where.Node, err)
		return
	}
	defer client.Terminate()
	silence := time.NewTimer(crossNodeTimeout)
	defer silence.Stop()
	heard := false
	for {
		select {
		case res := <-client.Responses():
			heard = true
			relayed := res.Clone()
			relayed.RemoveHeader("Via") // ours, the top one
			relayed.SetDestination(req.Source())
			if err := tx.Respond(relayed); err != nil {
				e.log.Debug("relayed answer not sent", "status", res.StatusCode, "err", err)
			}
			if res.StatusCode >= 200 {
				e.log.Info("retrieve forwarded", "orbit", where.Orbit, "from", party, "node", where.Node, "status", res.StatusCode)
				return
			}
		case <-silence.C:
			if !heard {
				e.unreachableNode(req, tx, party, where, "node "+where.Node+" does not answer", nil)
				return
			}
		case <-cancelled:
			cancelled = nil
			e.cancelForwarded(fwd)
		case <-client.Done():
			e.unreachableNode(req, tx, party, where, "node "+where.Node+" did not answer", client.Err())
			return
		case <-tx.Done():
			return
		}
	}
}

// unreachableNode answers a retrieve whose node could not be reached 480,
// saying why.
func (e *Engine) unreachableNode(req *sip.Request, tx sip.ServerTransaction, party string, where *park.ElsewhereError, why string, err error) {
	e.log.Info("retrieve refused", "orbit", where.Orbit, "from", party, "status", 480, "why", why, "err", err)
	e.reply(req, tx, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", warning(why))
}

// cancelForwarded sends on a caller's CANCEL (RFC 3261 §16.10): same
// Request-URI, Call-ID, From, To and CSeq number as the forwarded INVITE,
// and its top Via only.
func (e *Engine) cancelForwarded(fwd *sip.Request) {
	c := sip.NewRequest(sip.CANCEL, fwd.Recipient)
	c.AppendHeader(sip.HeaderClone(fwd.Via()))
	c.AppendHeader(sip.HeaderClone(fwd.From()))
	c.AppendHeader(sip.HeaderClone(fwd.To()))
	c.AppendHeader(sip.HeaderClone(fwd.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: fwd.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.AppendHeader(sip.HeaderClone(fwd.MaxForwards()))
	c.SetDestination(fwd.Destination())
	c.SetTransport(fwd.Transport())
	e.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(e.tasksCtx, 5*time.Second)
		defer cancel()
		if _, err := clientDo(ctx, e.client, c, func(*sipgo.Client, *sip.Request) error { return nil }); err != nil && !errors.Is(err, context.Canceled) {
			e.log.Debug("forwarded CANCEL failed", "err", err)
		}
	})
}
