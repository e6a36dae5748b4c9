package sipadapter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/callpark/callpark/media"
)

// ErrNoRTPPort means every RTP port of the configured range is in use (503).
var ErrNoRTPPort = errors.New("sipadapter: no free RTP port")

// The pool keeps the sockets of ended legs bound for the next ones: at a
// thousand calls a second, socket(), bind() and close() per leg (and the
// netpoller's registration net.ListenUDP adds) were the largest system-call
// cost of a park-and-retrieve cycle after sending packets (BENCHMARKS.md,
// issue 16, goal 2).
const (
	// portQuarantine is how long an ended leg's socket rests before the
	// pool hands it out again when another port is free: what the old
	// call's peer still sends in that time is discarded, not heard by (or
	// latched to by) the next leg.
	portQuarantine = time.Second
	// maxRestingSockets bounds the sockets kept bound between calls (a
	// descriptor and a receive queue each); past it an ended leg's socket
	// is closed and its port bound again when its turn comes.
	maxRestingSockets = 2048
)

// PortPool hands out the even UDP ports of a range, one per call leg, and
// takes them back. It is exported so that a host PBX bridging its own calls
// draws from the same kind of pool as the park server, with the same rules:
//
//   - Only even ports are used: RTP takes the even port, and the odd one
//     above it stays free for RTCP (RFC 3550 §11).
//   - An ended leg's socket stays bound and rests (a quarantine of
//     portQuarantine) before the next leg gets it; then whatever reached it
//     meanwhile is discarded. Sockets that have rested go first, oldest
//     first; then ports never bound (or whose socket was closed), least
//     recently released first; a socket still resting only when nothing
//     else is left, since refusing the call would be worse.
//   - A port some other program holds is skipped and retried later, so a
//     pool shared with other software degrades instead of failing.
//   - A parked call keeps a port for its recall (reserve): a new leg is
//     refused rather than take it, so a recall never fails for want of a
//     port.
//
// Close closes the sockets kept between calls. A PortPool is safe for
// concurrent use.
type PortPool struct {
	ip         netip.Addr
	quarantine time.Duration
	maxResting int

	mu       sync.Mutex
	resting  []restingSocket // ended legs' sockets, oldest release first
	free     []uint16        // ports without a socket: take from the front, return to the back
	inUse    int
	reserved int // free ports kept for parked calls' recalls
	closed   bool
}

// restingSocket is an ended leg's socket, kept bound since its release.
type restingSocket struct {
	sock  *media.Socket
	since time.Time
}

// NewPortPool covers the even ports of [lo, hi] on ip, the address the
// sockets are bound to. The range must lie within 1024-65535 (no privileged
// ports) and hold at least one even port.
func NewPortPool(ip netip.Addr, lo, hi int) (*PortPool, error) {
	if lo < 1024 || hi > 65535 || lo > hi {
		return nil, &ConfigError{"RTP port range", fmt.Sprintf("%d-%d", lo, hi), "must lie within 1024-65535, low end first"}
	}
	p := &PortPool{ip: ip, quarantine: portQuarantine, maxResting: maxRestingSockets}
	for port := lo + lo%2; port <= hi; port += 2 {
		p.free = append(p.free, uint16(port))
	}
	if len(p.free) == 0 {
		return nil, &ConfigError{"RTP port range", fmt.Sprintf("%d-%d", lo, hi), "must hold an even port"}
	}
	return p, nil
}

// freeLocked is the number of ports not handed out.
func (p *PortPool) freeLocked() int { return len(p.resting) + len(p.free) }

// acquire returns a bound socket for a leg (see PortPool for which), or
// ErrNoRTPPort when every port is in use, held elsewhere, or kept for a
// recall (reserve). It tries each unbound port at most once, so it never
// spins on a range that other programs have taken. Give the socket back
// with release.
func (p *PortPool) acquire() (*media.Socket, error) {
	p.mu.Lock()
	if p.freeLocked() <= p.reserved {
		p.mu.Unlock()
		return nil, ErrNoRTPPort
	}
	return p.takeLocked()
}

// acquireReserved is acquire for the recall of a parked call that holds a
// reservation: it may take a port kept for recalls. The reservation stays
// until unreserve: a recall that fails gives its port back for the next.
func (p *PortPool) acquireReserved() (*media.Socket, error) {
	p.mu.Lock()
	return p.takeLocked()
}

// takeLocked hands out a socket and unlocks p. A resting socket's queue is
// emptied after the lock is let go: a system call or more, not the pool's
// business.
func (p *PortPool) takeLocked() (*media.Socket, error) {
	if len(p.resting) > 0 && time.Since(p.resting[0].since) >= p.quarantine {
		return p.takeRestingLocked(), nil
	}
	for range len(p.free) {
		port := p.free[0]
		p.free = p.free[1:]
		sock, err := media.ListenSocket(netip.AddrPortFrom(p.ip, port))
		if err != nil {
			p.free = append(p.free, port) // held elsewhere: try it again later
			continue
		}
		p.inUse++
		p.mu.Unlock()
		return sock, nil
	}
	if len(p.resting) > 0 {
		return p.takeRestingLocked(), nil // the range is small for the call rate
	}
	p.mu.Unlock()
	return nil, ErrNoRTPPort
}

func (p *PortPool) takeRestingLocked() *media.Socket {
	sock := p.resting[0].sock
	p.resting[0] = restingSocket{}
	p.resting = p.resting[1:]
	p.inUse++
	p.mu.Unlock()
	sock.Discard()
	return sock
}

// reserve keeps one free port for a parked call's recall, or reports
// ErrNoRTPPort when none is left beyond those already kept.
func (p *PortPool) reserve() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freeLocked() <= p.reserved {
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

// release takes back a socket acquire handed out, once no endpoint is on
// it; it rests bound (or is closed, past maxResting or after Close).
// Release each socket once.
func (p *PortPool) release(sock *media.Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inUse--
	if p.closed || len(p.resting) >= p.maxResting {
		_ = sock.Close()
		p.free = append(p.free, sock.LocalAddr().Port())
		return
	}
	p.resting = append(p.resting, restingSocket{sock: sock, since: time.Now()})
}

// Close closes the sockets kept between calls; those still in use are
// closed when released. The pool goes on handing out ports, bound anew.
// It is idempotent.
func (p *PortPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.closeRestingLocked()
}

func (p *PortPool) closeRestingLocked() {
	for _, r := range p.resting {
		_ = r.sock.Close()
		p.free = append(p.free, r.sock.LocalAddr().Port())
	}
	p.resting = nil
}

// takeShared binds a free port for a shared RTP port and keeps it out of
// the pool (and of InUse) until returnShared. The shared port lives as long
// as its engine, so it is bound through the net package, not kept.
func (p *PortPool) takeShared() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freeLocked() <= p.reserved {
		return nil, ErrNoRTPPort
	}
	if len(p.free) == 0 {
		p.closeRestingLocked()
	}
	for range len(p.free) {
		port := p.free[0]
		p.free = p.free[1:]
		conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, port)))
		if err != nil {
			p.free = append(p.free, port)
			continue
		}
		return conn, nil
	}
	return nil, ErrNoRTPPort
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

// endpoint builds a media endpoint on a socket taken with acquire; on error
// the socket is given back.
func (p *PortPool) endpoint(sock *media.Socket, opts media.EndpointOptions) (*media.Endpoint, error) {
	ep, err := media.NewSocketEndpoint(sock, opts)
	if err != nil {
		p.release(sock)
		return nil, err
	}
	return ep, nil
}

// freeConn gives back a socket taken with acquire that no endpoint owns.
func (p *PortPool) freeConn(sock *media.Socket) { p.release(sock) }

// freeEndpoint closes an endpoint built by endpoint and gives its socket
// back. An endpoint on a shared port only closes: the port is not the
// leg's.
func (p *PortPool) freeEndpoint(ep *media.Endpoint) {
	if ep.SharedPort() != nil {
		ep.Close()
		return
	}
	sock := ep.Socket()
	ep.Close()
	if sock != nil {
		p.release(sock)
	}
}
