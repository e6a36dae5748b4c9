package media

import (
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Socket is a UDP socket bound for RTP that outlives the call legs on it:
// an Endpoint built with NewSocketEndpoint reads and sends through it and,
// when closed, leaves it open and bound for the next leg. A host that keeps
// its sockets between calls (sipadapter's PortPool) then pays for neither
// socket() nor bind() nor close() per leg, which at a thousand calls a
// second was the largest system-call cost of a park-and-retrieve cycle
// after sending packets (BENCHMARKS.md, issue 16, goal 2).
//
// What the old call's peer sends after its leg has ended waits in the
// socket's receive queue: call Discard before handing the socket to a new
// leg, after it has rested long enough for that peer to have stopped.
//
// On Linux the socket never enters Go's netpoller (see rawsock_linux.go);
// elsewhere it is a *net.UDPConn. A Socket serves one endpoint at a time.
type Socket struct {
	local netip.AddrPort
	busy  atomic.Bool // an endpoint is on it
	sys   socketSys   // the platform's descriptor (socket_linux.go)
}

// ListenSocket binds a UDP socket to addr.
func ListenSocket(addr netip.AddrPort) (*Socket, error) {
	s := &Socket{}
	local, err := s.sys.listen(addr)
	if err != nil {
		return nil, err
	}
	s.local = local
	return s, nil
}

// LocalAddr returns the address the socket is bound to.
func (s *Socket) LocalAddr() netip.AddrPort { return s.local }

// Discard drops every datagram queued on the socket and returns how many
// there were. It does not wait for more.
func (s *Socket) Discard() int { return s.sys.discard() }

// Close closes the socket. Close the endpoint on it first.
func (s *Socket) Close() error { return s.sys.close() }

// NewSocketEndpoint starts a leg on s, which stays the caller's: the
// endpoint's Close stops reading and sending through it and leaves it open.
// s must not carry another endpoint (ErrInvalidArgument).
//
// On Linux the leg is read from one of the Scheduler's epoll sets as
// NewEndpoint's are, whatever the platform's I/O path of the scheduler.
func NewSocketEndpoint(s *Socket, opts EndpointOptions) (*Endpoint, error) {
	if s == nil {
		return nil, fmt.Errorf("%w: NewSocketEndpoint: socket is nil", ErrInvalidArgument)
	}
	if !s.busy.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: NewSocketEndpoint: socket %v carries another endpoint", ErrInvalidArgument, s.local)
	}
	e, err := newEndpoint(nil, s.local, opts)
	if err != nil {
		s.busy.Store(false)
		return nil, err
	}
	e.sock, e.released = s, make(chan struct{})
	if err := e.startSocketIO(); err != nil {
		s.busy.Store(false)
		return nil, err
	}
	return e, nil
}

// Socket returns the Socket the leg is on (NewSocketEndpoint), nil if the
// leg owns its socket or shares a port.
func (e *Endpoint) Socket() *Socket { return e.sock }
