package sipadapter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/callpark/callpark/media"
)

// ErrNoRTPPort means every RTP port of the configured range is in use (503).
var ErrNoRTPPort = errors.New("sipadapter: no free RTP port")

// PortPool hands out the even UDP ports of a range, one per call leg, and
// takes them back. It is exported so that a host PBX bridging its own calls
// draws from the same kind of pool as the park server, with the same rules:
//
//   - Only even ports are used: RTP takes the even port, and the odd one
//     above it stays free for RTCP (RFC 3550 §11).
//   - Free ports queue in release order, so a port freed now is the last to
//     be reused: late packets of the old call do not land in a new one.
//   - A port some other program holds is skipped and retried later, so a
//     pool shared with other software degrades instead of failing.
//   - A parked call keeps a port for its recall (reserve): a new leg is
//     refused rather than take it, so a recall never fails for want of a
//     port.
//
// A PortPool is safe for concurrent use.
type PortPool struct {
	ip netip.Addr

	mu       sync.Mutex
	free     []uint16 // queue: take from the front, return to the back
	inUse    int
	reserved int // free ports kept for parked calls' recalls
}

// NewPortPool covers the even ports of [lo, hi] on ip, the address the
// sockets are bound to. The range must lie within 1024-65535 (no privileged
// ports) and hold at least one even port.
func NewPortPool(ip netip.Addr, lo, hi int) (*PortPool, error) {
	if lo < 1024 || hi > 65535 || lo > hi {
		return nil, &ConfigError{"RTP port range", fmt.Sprintf("%d-%d", lo, hi), "must lie within 1024-65535, low end first"}
	}
	p := &PortPool{ip: ip}
	for port := lo + lo%2; port <= hi; port += 2 {
		p.free = append(p.free, uint16(port))
	}
	if len(p.free) == 0 {
		return nil, &ConfigError{"RTP port range", fmt.Sprintf("%d-%d", lo, hi), "must hold an even port"}
	}
	return p, nil
}

// acquire binds the least recently released free port and returns its
// socket, or ErrNoRTPPort when every port is in use, held elsewhere, or
// kept for a recall (reserve). It tries each free port at most once, so it
// never spins on a range that other programs have taken. The caller closes
// the socket, then gives the port back with release.
func (p *PortPool) acquire() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) <= p.reserved {
		return nil, ErrNoRTPPort
	}
	return p.bindLocked()
}

// acquireReserved is acquire for the recall of a parked call that holds a
// reservation: it may take a port kept for recalls. The reservation stays
// until unreserve: a recall that fails gives its port back for the next.
func (p *PortPool) acquireReserved() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bindLocked()
}

// reserve keeps one free port for a parked call's recall, or reports
// ErrNoRTPPort when none is left beyond those already kept.
func (p *PortPool) reserve() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) <= p.reserved {
		return ErrNoRTPPort
	}
	p.reserved++
	return nil
}

// unreserve gives back a reservation: the call has left the lot.
func (p *PortPool) unreserve() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reserved--
}

func (p *PortPool) bindLocked() (*net.UDPConn, error) {
	for range len(p.free) {
		port := p.free[0]
		p.free = p.free[1:]
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, port)))
		if err != nil {
			p.free = append(p.free, port) // held elsewhere: try it again later
			continue
		}
		p.inUse++
		return conn, nil
	}
	return nil, ErrNoRTPPort
}

// Release returns a port Acquire handed out, once its socket is closed: a
// port released while still bound would only be skipped by the next
// Acquire. It goes to the back of the queue. Release each port once.
func (p *PortPool) release(port uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, port)
	p.inUse--
}

// takeShared binds the least recently released free port for a shared RTP
// port and keeps it out of the pool (and of InUse) until returnShared.
func (p *PortPool) takeShared() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) <= p.reserved {
		return nil, ErrNoRTPPort
	}
	conn, err := p.bindLocked()
	if err == nil {
		p.inUse--
	}
	return conn, err
}

// returnShared gives back the port takeShared took, once its socket is
// closed.
func (p *PortPool) returnShared(port uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, port)
}

// freeShared closes a socket takeShared bound that serves nothing, and
// gives its port back.
func (p *PortPool) freeShared(conn *net.UDPConn) {
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	conn.Close()
	p.returnShared(port)
}

// InUse returns the number of ports handed out and not yet released: zero
// once every call has ended, which makes it a leak check for tests.
func (p *PortPool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Endpoint builds a media endpoint on a socket taken with Acquire; on error
// the port is given back.
func (p *PortPool) endpoint(conn *net.UDPConn, opts media.EndpointOptions) (*media.Endpoint, error) {
	ep, err := media.NewEndpoint(conn, opts)
	if err != nil {
		p.freeConn(conn)
		return nil, err
	}
	return ep, nil
}

// Free closes a socket taken with Acquire that no endpoint owns, and
// returns its port.
func (p *PortPool) freeConn(conn *net.UDPConn) {
	port := conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	conn.Close()
	p.release(port)
}

// FreeEndpoint closes an endpoint built by Endpoint, and its socket, and
// returns its port. An endpoint on a shared port only closes: the port is
// not the leg's.
func (p *PortPool) freeEndpoint(ep *media.Endpoint) {
	if ep.SharedPort() != nil {
		ep.Close()
		return
	}
	port := ep.LocalAddr().Port()
	ep.Close()
	p.release(port)
}
