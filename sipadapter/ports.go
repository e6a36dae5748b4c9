package sipadapter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
)

// ErrNoRTPPort means every RTP port of the configured range is in use (503).
var ErrNoRTPPort = errors.New("sipadapter: no free RTP port")

// portPool hands out the even UDP ports of a range, one per call leg, and
// takes them back. Free ports queue in release order, so a port freed now is
// the last to be reused: late packets of the old call do not land in a new
// one. A port some other program holds is skipped and retried later.
type portPool struct {
	ip netip.Addr

	mu    sync.Mutex
	free  []uint16 // queue: take from the front, return to the back
	inUse int
}

// newPortPool covers the even ports of [lo, hi]: RTP takes the even port,
// RTCP would take the next odd one.
func newPortPool(ip netip.Addr, lo, hi int) (*portPool, error) {
	if lo < 1024 || hi > 65535 || lo > hi {
		return nil, fmt.Errorf("sipadapter: RTP port range %d-%d: must lie within 1024-65535, low end first", lo, hi)
	}
	p := &portPool{ip: ip}
	for port := lo + lo%2; port <= hi; port += 2 {
		p.free = append(p.free, uint16(port))
	}
	if len(p.free) == 0 {
		return nil, fmt.Errorf("sipadapter: RTP port range %d-%d holds no even port", lo, hi)
	}
	return p, nil
}

// acquire binds the next free port. It tries each free port at most once.
func (p *portPool) acquire() (*net.UDPConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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

// release returns a port whose socket has been closed.
func (p *portPool) release(port uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, port)
	p.inUse--
}

// used returns the number of ports handed out and not yet released.
func (p *portPool) used() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}
