package parktest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/internal/siptransport"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// The phone's SIP stack: listening, sending, and the handlers every
// request goes through.

// start opens the listener and the sipgo stack and serves requests.
func (p *Phone) start() error {
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	var (
		tcp   net.Listener
		local netip.AddrPort
	)
	if p.transport == "UDP" {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return fmt.Errorf("parktest: listen udp: %w", err)
		}
		p.udp = siptransport.NewListener(c)
		local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		p.listener = c
	} else {
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return fmt.Errorf("parktest: listen tcp: %w", err)
		}
		tcp = l
		local = l.Addr().(*net.TCPAddr).AddrPort()
		if p.transport == "TLS" {
			tcp = tls.NewListener(l, p.tlsConfig)
		}
		p.listener = tcp
	}
	p.addr = local
	p.uri = sip.Uri{Scheme: "sip", User: p.user, Host: local.Addr().String(), Port: int(local.Port())}
	if p.transport != "UDP" {
		p.uri.UriParams = sip.NewParams()
		p.uri.UriParams.Add("transport", strings.ToLower(p.transport))
	}
	p.contact = sip.ContactHeader{Address: *p.uri.Clone()}

	uaOpts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("parktest"),
		sipgo.WithUserAgentHostname(local.Addr().String()),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(p.log),
			sip.WithTransactionLayerUnhandledResponseHandler(p.onStrayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(p.log),
			sip.WithTransportLayerReadFilter(p.readFilter),
		),
	}
	if p.tlsConfig != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(p.tlsConfig))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo user agent: %w", err)
	}
	clientOpts := []sipgo.ClientOption{sipgo.WithClientLogger(p.log)}
	if p.transport == "UDP" {
		// Requests leave from the listening socket, so the peer's responses
		// and its later requests (to our Contact) reach the same port.
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(local.String()))
	}
	client, err := sipgo.NewClient(ua, clientOpts...)
	if err != nil {
		_ = ua.Close()
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo client: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(p.log))
	if err != nil {
		_ = ua.Close()
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo server: %w", err)
	}
	p.ua, p.client = ua, client
	srv.OnInvite(p.handler(p.onInvite))
	srv.OnAck(p.handler(p.onAck))
	srv.OnBye(p.handler(p.onBye))
	srv.OnCancel(p.handler(p.onCancel))
	srv.OnRefer(p.handler(p.onRefer))
	srv.OnNotify(p.handler(p.onNotify))
	srv.OnSubscribe(p.handler(p.onSubscribe))
	srv.OnMessage(p.handler(p.onMessage))
	srv.OnOptions(p.handler(p.onOptions))
	srv.OnNoRoute(p.handler(p.onNoRoute))

	sched := media.NewScheduler(media.SchedulerOptions{Shards: 1, Logger: p.log})
	p.sched = sched
	go func() {
		defer close(p.served)
		var err error
		if p.udp != nil {
			defer p.udp.Stopped()
			err = srv.ServeUDP(p.udp)
		} else {
			err = p.serveStream(srv, tcp)
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.Warn("parktest: serve stopped", "error", err)
		}
	}()
	if p.udp != nil {
		// sipgo registers the socket for sending only once it reads it; a
		// request sent before would fail to bind the same address.
		select {
		case <-p.udp.Reading():
		case <-p.served:
			_ = ua.Close()
			sched.Close()
			return fmt.Errorf("parktest: serve udp %v stopped at start", local)
		}
	}
	return nil
}

// serveStream serves the phone's TCP or TLS listener.
func (p *Phone) serveStream(srv *sipgo.Server, l net.Listener) error {
	if p.transport == "TLS" {
		return srv.ServeTLS(l)
	}
	return srv.ServeTCP(l)
}

// readFilter sees every datagram or stream chunk before sipgo parses it:
// once Close drains the phone it drops everything that comes over TCP (the
// UDP listener drops datagrams itself, see drain).
func (p *Phone) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.draining.Load() {
		return nil, nil
	}
	return data, nil
}

// drain stops the phone from taking anything in, so that no request read
// before Close can make sipgo open a socket after it: over UDP, the
// shared listener's Drain and Pin (siptransport) point every sender, and
// the phone's own address, at a stand-in for the listener in sipgo's pool.
func (p *Phone) drain() {
	p.draining.Store(true)
	if p.udp == nil {
		return
	}
	peers := p.udp.Drain()
	p.udp.Pin(p.ua.TransportLayer().Pool("udp"), peers)
}

// Options sends an out-of-dialog OPTIONS to target and returns its final
// response, whatever its status.
func (p *Phone) Options(ctx context.Context, target string) (*sip.Response, error) {
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	u, headers, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	req := p.newUACDialog(u).newRequest(sip.OPTIONS)
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	return p.do(ctx, req)
}

// Send is the escape hatch for requests a test builds by hand, odd or
// malformed on purpose (an unknown method, a SUBSCRIBE without Event, an
// INVITE to a bad orbit). It adds only what RFC 3261 §8.1.1 requires and req
// lacks (From with a tag, To, Call-ID, CSeq, Max-Forwards; Via when sent),
// sends it over the phone's transport out of any dialog, and returns the
// final response, whatever its status. A 2xx to an INVITE is not
// acknowledged: use Call for calls. ACK and CANCEL are refused, having no
// response to wait for. In-dialog requests go through Call.Send.
func (p *Phone) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.IsAck() || req.IsCancel() {
		return nil, fmt.Errorf("%w: Send: method %s has no response to wait for", ErrInvalidOptions, req.Method)
	}
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	d := p.newUACDialog(req.Recipient)
	model := d.newRequest(req.Method)
	for _, name := range []string{"From", "To", "Call-ID", "Max-Forwards"} {
		if req.GetHeader(name) == nil {
			req.AppendHeader(sip.HeaderClone(model.GetHeader(name)))
		}
	}
	if req.CSeq() == nil {
		req.AppendHeader(sip.HeaderClone(model.CSeq()))
	}
	if req.ContentLength() == nil {
		req.SetBody(req.Body())
	}
	req.SetTransport(p.transport)
	return p.do(ctx, req)
}

// do sends req in a client transaction and returns its final response.
func (p *Phone) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	target := req.Recipient.String()
	tx, err := p.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrTransaction, req.Method, target, err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, txError(req.Method, target, tx.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.closing:
			return nil, ErrPhoneClosed
		}
	}
}

// txError reports a transaction that ended without a final response.
func txError(method sip.RequestMethod, target string, err error) error {
	if err == nil {
		return fmt.Errorf("%w: %s %s: transaction ended", ErrTransaction, method, target)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrTransaction, method, target, err)
}

// enter registers an operation or a request handler with Close, which waits
// for them; it reports false once the phone is closing.
func (p *Phone) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Phone) leave() { p.wg.Done() }

// handler wraps a request handler so that Close waits for it, and answers
// 503 once the phone is closing.
func (p *Phone) handler(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !p.enter() {
			if !req.IsAck() {
				p.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
			}
			return
		}
		defer p.leave()
		h(req, tx)
	}
}

// respond answers req; a failure (the peer went away) is only logged.
func (p *Phone) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		p.log.Debug("parktest: respond failed", "request", req.StartLine(), "status", code, "error", err)
	}
}

// allowHeader lists the methods the phone handles, for 405 and OPTIONS.
func allowHeader() sip.Header {
	return sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, SUBSCRIBE, MESSAGE")
}

func (p *Phone) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	p.respond(tx, req, sip.StatusOK, "OK", nil, allowHeader(),
		sip.NewHeader("Accept", "application/sdp"), sip.NewHeader("Allow-Events", "refer, dialog"))
}

func (p *Phone) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	p.respond(tx, req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil, allowHeader())
}

func (p *Phone) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	m := Message{From: req.From().Address.String(), Body: string(req.Body())}
	if ct := req.ContentType(); ct != nil {
		m.ContentType = ct.Value()
	}
	p.inbox.addMessage(m)
	p.respond(tx, req, sip.StatusOK, "OK", nil)
}

// onCancel sees only CANCELs that match no INVITE transaction: sipgo answers
// the others itself and tells the INVITE's handler (see answerIncoming).
func (p *Phone) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
}

// onStrayResponse gets the responses no client transaction wants: the
// retransmitted 2xx of an INVITE whose transaction the phone already ended,
// because its ACK was lost. It sends that ACK again (RFC 3261 §13.2.2.4).
func (p *Phone) onStrayResponse(res *sip.Response) {
	if !p.enter() {
		return
	}
	defer p.leave()
	cseq := res.CSeq()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE || res.CallID() == nil || res.From() == nil {
		p.log.Debug("parktest: stray response ignored", "response", res.Short())
		return
	}
	tag, _ := res.From().Params.Get("tag")
	p.mu.Lock()
	c := p.calls[dialogKey(res.CallID().Value(), tag)]
	p.mu.Unlock()
	if c == nil {
		p.log.Debug("parktest: stray 2xx for no call", "response", res.Short())
		return
	}
	c.resendAck(cseq.SeqNo)
}
