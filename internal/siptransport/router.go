package siptransport

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ErrSenderClosed is what a request gets once its Router is closed:
// the host is shutting down and nothing may open a socket any more.
var ErrSenderClosed = errors.New("siptransport: no more requests: the sender is closed")

// Router decides where each request a sipgo client starts leaves
// from. Install it as the client's TxRequester (Route does); it
// replaces sipgo.WithClientConnectionAddr, which gets two cases wrong:
//
//   - Over TCP, sipgo files every accepted connection under the listener's
//     own address as well as the peer's, so a request pinned to the listener
//     address rides whichever connection was accepted last: the parker's
//     MESSAGE or a recall INVITE went to another phone. Over TCP and TLS the
//     router leaves the local address empty, and sipgo reuses a connection
//     from the target or opens one to it.
//   - sipgo's dialogs build in-dialog requests (BYE, re-INVITE, ACK, NOTIFY)
//     without the connection address, so one to a Contact the host never
//     heard from left from a new socket bound on every interface, with its
//     own reader goroutine. Over UDP the router gives every request the
//     listener's address, so it leaves from the port the peer knows.
//
// Close stops it for good: requests get ErrSenderClosed instead of opening
// a socket after the listener is gone, which would outlive the user agent.
//
// sipgo marks TxRequester experimental; route_test.go pins the behaviour
// this relies on, so an upgrade that changes it fails there. With a
// TxRequester sipgo also skips one convenience: filling in the port of an
// INVITE's Contact from the connection. Give sipgo.DialogUA a ContactHDR
// with the port (the server and the example PBX do).
type Router struct {
	tx  *sip.TransactionLayer
	tp  *sip.TransportLayer
	udp sip.Addr
	tls netip.AddrPort // zero until SetTLSAddr

	mu     sync.RWMutex // held for reading while a request is handed to sipgo
	closed bool
}

// Route installs a Router on client, whose user agent is ua,
// for a host listening on udp over UDP. Keep sipgo.WithClientHostname and
// WithClientPort for the Via header.
func Route(client *sipgo.Client, ua *sipgo.UserAgent, udp netip.AddrPort) *Router {
	r := &Router{
		tx:  ua.TransactionLayer(),
		tp:  ua.TransportLayer(),
		udp: sip.Addr{IP: udp.Addr().AsSlice(), Port: int(udp.Port())},
	}
	client.TxRequester = r
	return r
}

// SetTLSAddr tells the router where the host serves SIP over TLS. A
// request over TLS then names that address in its Via (the sent-by of RFC
// 3261 §18.1.1) instead of the UDP and TCP listener's, which sipgo puts in
// every Via: a peer that sends its responses to the sent-by, not back over
// the connection the request came on, connected to the plain port with TLS
// and failed (linphone: the retrieve's re-INVITE and the BYE of a parked
// call never got their 200). Call it before the first request.
func (r *Router) SetTLSAddr(addr netip.AddrPort) { r.tls = addr }

// tlsSentBy rewrites the Via that the client put on a request over TLS (our
// host, our UDP port) to name the TLS listener.
func (r *Router) tlsSentBy(req *sip.Request) {
	if !r.tls.IsValid() || !strings.EqualFold(req.Transport(), "TLS") {
		return
	}
	via := req.Via()
	if via == nil || via.Port != r.udp.Port || via.Host != r.udp.IP.String() {
		return // not the one the client wrote
	}
	via.Port = int(r.tls.Port())
	if !r.tls.Addr().IsUnspecified() {
		via.Host = r.tls.Addr().String()
	}
}

// Request sends req from the right place: in a new client transaction, or,
// for an ACK (which sipgo hands here too), straight to the transport. It
// implements sipgo.ClientTransactionRequester.
func (r *Router) Request(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, ErrSenderClosed
	}
	if sip.IsReliable(req.Transport()) {
		req.Laddr = sip.Addr{}
		r.tlsSentBy(req)
	} else {
		r.udp.Copy(&req.Laddr)
	}
	if req.IsAck() {
		return nil, r.tp.WriteMsg(req)
	}
	tx, err := r.tx.Request(ctx, req)
	if err != nil {
		return nil, err // not a nil *ClientTx inside a non-nil interface
	}
	return tx, nil
}

// Close refuses every request from now on, once those being handed to
// sipgo have their connection. Retransmissions of transactions already
// started go on over the connections they have.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}
