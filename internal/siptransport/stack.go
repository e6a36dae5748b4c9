// Package siptransport is the SIP transport lifecycle that callpark's
// programs share: SIP over UDP and TCP on one port (and TLS on another), every request leaving
// from the right socket, and a shutdown after which sipgo has no socket
// left to open. sipgo alone gets each of these subtly wrong (see Router,
// Listener.Pin); the park server, the example PBX, the test phone and the
// load tool all go through here, so the workarounds live once.
package siptransport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// ListenPair binds UDP and TCP on one address, as SIP serves both on the
// same port; with port 0 it looks for a port free in both.
func ListenPair(want netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	for range 20 {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(want))
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", want, err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(want.Addr(), uint16(port))))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if want.Port() != 0 {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", want, err)
		}
	}
	return nil, nil, fmt.Errorf("no port free for both UDP and TCP on %s", want.Addr())
}

// Options configures a Stack.
type Options struct {
	// Addr is where to listen, UDP and TCP; port 0 picks a free one.
	Addr netip.AddrPort
	// UA, when set, is the host's user agent: the stack serves with it and
	// does not close it. Nil makes one of the stack's own.
	UA *sipgo.UserAgent
	// UserAgent is the User-Agent header of a user agent of the stack's own.
	UserAgent string
	// MaxMessageSize, when not 0, bounds the SIP messages a user agent of
	// the stack's own parses.
	MaxMessageSize int
	// Logger gets sipgo's diagnostics; nil is silent.
	Logger *slog.Logger
	// OnStrayResponse, when set, gets every response a user agent of the
	// stack's own matches to no client transaction (a 2xx retransmitted
	// after its transaction ended, say); nil leaves them to sipgo, which
	// logs them.
	OnStrayResponse func(*sip.Response)
	// TLSAddr, when valid, is where to serve SIP over TLS too (RFC 3261
	// 26.2, port 5061 by convention); port 0 picks a free one. TLS, then
	// required, is the server's configuration (its certificate, and
	// ClientAuth and ClientCAs for mutual TLS); a user agent of the
	// stack's own also dials TLS peers with it (RootCAs).
	TLSAddr netip.AddrPort
	TLS     *tls.Config
}

// Stack is a sipgo user agent with a server and a client, listening on one
// address over UDP and TCP. Register the handlers on Server, then Serve;
// Close stops it for good.
type Stack struct {
	UA     *sipgo.UserAgent
	Server *sipgo.Server
	Client *sipgo.Client
	Router *Router // the Client's: where each request leaves from
	Addr   netip.AddrPort

	// TLSAddr is where SIP over TLS is served; zero without it.
	TLSAddr netip.AddrPort

	ownUA  bool
	udp    *Listener
	tcp    net.Listener
	tls    net.Listener // nil without TLS
	served chan error

	mu      sync.Mutex
	serving bool
	closed  bool
}

// Listen binds the address and builds the user agent, server and client,
// with a Router on the client. Nothing is served until Serve.
func Listen(opts Options) (*Stack, error) {
	udp, tcp, err := ListenPair(opts.Addr)
	if err != nil {
		return nil, err
	}
	s := &Stack{Addr: udp.LocalAddr().(*net.UDPAddr).AddrPort(), udp: NewListener(udp), tcp: tcp, served: make(chan error, 3)}
	fail := func(err error) (*Stack, error) {
		udp.Close()
		tcp.Close()
		if s.tls != nil {
			s.tls.Close()
		}
		if s.ownUA && s.UA != nil {
			s.UA.Close()
		}
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.TLSAddr.IsValid() {
		if opts.TLS == nil {
			return fail(errors.New("siptransport: TLSAddr without a TLS configuration"))
		}
		l, err := tls.Listen("tcp", opts.TLSAddr.String(), opts.TLS)
		if err != nil {
			return fail(fmt.Errorf("listen tls %s: %w", opts.TLSAddr, err))
		}
		s.tls = l
		s.TLSAddr = l.Addr().(*net.TCPAddr).AddrPort()
	}
	host := s.Addr.Addr().String()
	s.UA = opts.UA
	if s.UA == nil {
		s.ownUA = true
		txOpts := []sip.TransactionLayerOption{sip.WithTransactionLayerLogger(log)}
		if opts.OnStrayResponse != nil {
			txOpts = append(txOpts, sip.WithTransactionLayerUnhandledResponseHandler(opts.OnStrayResponse))
		}
		uaOpts := []sipgo.UserAgentOption{
			sipgo.WithUserAgent(opts.UserAgent),
			sipgo.WithUserAgentHostname(host),
			sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
			sipgo.WithUserAgentTransactionLayerOptions(txOpts...),
		}
		if opts.TLS != nil {
			uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(opts.TLS))
		}
		if opts.MaxMessageSize != 0 {
			parser := sip.NewParser()
			parser.MaxMessageLength = opts.MaxMessageSize
			uaOpts = append(uaOpts, sipgo.WithUserAgentParser(parser))
		}
		if s.UA, err = sipgo.NewUA(uaOpts...); err != nil {
			return fail(err)
		}
	}
	if s.Server, err = sipgo.NewServer(s.UA, sipgo.WithServerLogger(log)); err != nil {
		return fail(err)
	}
	if s.Client, err = sipgo.NewClient(s.UA,
		sipgo.WithClientLogger(log),
		sipgo.WithClientHostname(host),
		sipgo.WithClientPort(int(s.Addr.Port())),
	); err != nil {
		return fail(err)
	}
	s.Router = Route(s.Client, s.UA, s.Addr)
	if s.TLSAddr.IsValid() {
		s.Router.SetTLSAddr(s.TLSAddr)
	}
	return s, nil
}

// ErrClosed is what Serve returns on a Stack already closed.
var ErrClosed = errors.New("siptransport: closed")

// Serve starts serving UDP and TCP with the handlers registered on Server.
// It returns once sipgo reads the UDP socket: sipgo files the socket for
// sending only then, and a request sent before would fail to bind the same
// address. A second call does nothing.
func (s *Stack) Serve() error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.serving:
		s.mu.Unlock()
		return nil
	}
	s.serving = true
	s.mu.Unlock()
	reading := s.udp.Reading()
	go func() {
		defer s.udp.Stopped()
		s.served <- s.Server.ServeUDP(s.udp)
	}()
	go func() { s.served <- s.Server.ServeTCP(s.tcp) }()
	if s.tls != nil {
		go func() { s.served <- s.Server.ServeTLS(s.tls) }()
	}
	<-reading // or the loop has stopped: Stopped closes every waiter's wait
	return nil
}

// Close stops the stack: no request is sent from now on (the Router
// refuses them), no datagram is taken in, the listeners close, and a user
// agent of the stack's own is closed, leaving sipgo no socket to open for a
// request it read before and handles after (Listener.Pin). A host's user
// agent keeps reaching its peers its own way, so only the stack's address
// is pinned in it. Call it once the handlers in progress are done. A second
// call does nothing.
func (s *Stack) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	serving := s.serving
	s.mu.Unlock()

	s.Router.Close()
	if !serving {
		s.udp.Stopped()
	}
	peers := s.udp.Drain()
	if !s.ownUA {
		peers = nil
	}
	pinned := s.udp.Pin(s.UA.TransportLayer().Pool("udp"), peers)
	s.udp.Close()
	s.tcp.Close()
	listeners := 2
	if s.tls != nil {
		s.tls.Close()
		listeners++
	}
	if serving {
		for range listeners {
			<-s.served
		}
	}
	if s.ownUA {
		s.closeUA(pinned, peers)
	}
}

// closeUA closes the stack's own user agent as UserAgent.Close does, but
// keeps the stand-ins of Pin: clearing the UDP pool would drop them. That
// pool holds no other socket, since every request leaves from the listener
// (Router) and responses go out on it; should one ever be there (sipgo
// sending on its own), the pool is cleared, which closes it, and pinned
// again.
func (s *Stack) closeUA(pinned int, peers []string) {
	s.UA.TransactionLayer().Close()
	tl := s.UA.TransportLayer()
	for _, network := range []string{"tcp", "tls", "ws", "wss"} {
		_ = tl.Pool(network).Clear()
	}
	if pool := tl.Pool("udp"); pool.Size() > pinned {
		_ = pool.Clear()
		s.udp.Pin(pool, peers)
	}
}
