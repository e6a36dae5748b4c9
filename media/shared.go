package media

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// SharedPortOptions configures a SharedPort.
type SharedPortOptions struct {
	// Scheduler paces the music of the port's legs and, on Linux, reads
	// the port and sends the legs' due packets in batches (sendmmsg).
	// Required; every endpoint of the port uses it.
	Scheduler *Scheduler
	// Quarantine is how long the address of a leg that ended stays
	// suspect: a packet from it that no live leg's address matches, or
	// that carries the ended leg's SSRC, is dropped as a stray of the
	// finished call. Zero means DefaultQuarantine.
	Quarantine time.Duration
	// Logger receives unexpected read errors (Warn). Nil is silent.
	Logger *slog.Logger
}

// DefaultQuarantine is SharedPortOptions.Quarantine's default: longer than
// any jitter buffer or retransmission keeps a finished call's packets in
// flight.
const DefaultQuarantine = 30 * time.Second

// SharedPort is one UDP port that many call legs send and receive on, told
// apart by the peer's address, as WebRTC servers do on a single port. It
// exists for hold music at scale: every leg's packets leave from one
// socket, so on Linux the scheduler hands the kernel a batch of them per
// system call (sendmmsg) instead of one sendto per packet per leg socket.
//
// What a shared port changes against a port per leg (an Endpoint of its
// own), since the port no longer says which call a datagram belongs to:
//
//   - Demultiplexing: a datagram goes to the leg whose peer address (its
//     SDP address, or the address it latched) is exactly the source.
//   - Latching (symmetric RTP, NAT): a leg that has not yet received a
//     packet takes the first valid RTP packet from a host it expects (the
//     SDP address's host, or EndpointOptions.SignalingAddr, where the
//     peer's signalling came from: the NAT's public address) as its peer,
//     whatever the source port, and sends there from then on. If several
//     waiting legs expect that host, the packet cannot be attributed and is
//     dropped (SharedPortStats.Ambiguous): two phones behind one NAT whose
//     RTP ports the NAT rewrites, and whose SDP does not name the public
//     port, keep sending music to their SDP addresses. A leg that has
//     latched does not move again on a packet from elsewhere (a per-leg
//     port follows the latest source); a re-INVITE (SetRemote) makes it
//     wait for its peer again.
//   - A stray packet from an unknown source is dropped and counted
//     (Unknown). A packet from a finished leg's address (quarantined for
//     SharedPortOptions.Quarantine) is dropped (Stale) unless a live leg
//     has that address and the packet does not carry the finished leg's
//     SSRC: a phone that reuses its RTP port for its next call is heard,
//     its previous call's late packets are not.
//   - Firewalls need one UDP port open for parked calls instead of a
//     range.
//
// A SharedPort is safe for concurrent use.
type SharedPort struct {
	conn       *net.UDPConn // as handed in; see startIO for who closes it
	out        PacketWriter // where the legs' packets leave from
	io         endpointIO   // the platform's read path (shared_linux.go)
	local      netip.AddrPort
	sched      *Scheduler
	logger     *slog.Logger
	quarantine time.Duration
	done       chan struct{} // closed when the socket is no longer read

	// handling is held while a datagram is handed to its leg, so that a
	// leg's Close can wait until it is no longer read.
	handling sync.Mutex

	mu      sync.RWMutex
	legs    map[*Endpoint]portLeg
	bySrc   map[netip.AddrPort]*Endpoint
	waiting map[netip.Addr]map[*Endpoint]struct{} // legs not latched, by the hosts they expect
	recent  map[netip.AddrPort]finishedLeg
	fifo    []recentAddr // recent in order of expiry
	closed  bool

	received  atomic.Uint64
	unknown   atomic.Uint64
	ambiguous atomic.Uint64
	stale     atomic.Uint64
}

// portLeg is what the port knows of one of its legs.
type portLeg struct {
	remote  netip.AddrPort // where the leg sends; bySrc's key if sendable
	hosts   [2]netip.Addr  // hosts it may latch to while waiting
	waiting bool
}

// finishedLeg is the quarantine entry of a leg that ended.
type finishedLeg struct {
	until   time.Time
	ssrc    uint32
	hasSSRC bool
}

type recentAddr struct {
	addr  netip.AddrPort
	until time.Time
}

// SharedPortStats counts what a shared port read.
type SharedPortStats struct {
	// Legs is the number of endpoints on the port now.
	Legs int
	// Received is the number of datagrams handed to a leg (which may still
	// ignore them: see EndpointStats).
	Received uint64
	// Unknown is the number of datagrams dropped because no leg has their
	// source address or expects their source host.
	Unknown uint64
	// Ambiguous is the number of datagrams dropped because several legs
	// waiting to latch expect their source host.
	Ambiguous uint64
	// Stale is the number of datagrams dropped as late packets of a
	// finished leg (see SharedPortOptions.Quarantine).
	Stale uint64
}

// NewSharedPort takes ownership of conn (closed by Close) and starts
// reading it for the endpoints made with NewEndpoint. On error conn is left
// open and still the caller's.
func NewSharedPort(conn *net.UDPConn, opts SharedPortOptions) (*SharedPort, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: NewSharedPort: conn is nil", ErrInvalidArgument)
	}
	if opts.Scheduler == nil {
		return nil, fmt.Errorf("%w: SharedPortOptions.Scheduler is nil", ErrInvalidArgument)
	}
	if opts.Quarantine < 0 {
		return nil, fmt.Errorf("%w: SharedPortOptions.Quarantine %v is negative", ErrInvalidArgument, opts.Quarantine)
	}
	laddr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("%w: NewSharedPort: conn is not bound", ErrInvalidArgument)
	}
	p := &SharedPort{
		conn:       conn,
		local:      laddr.AddrPort(),
		sched:      opts.Scheduler,
		logger:     opts.Logger,
		quarantine: opts.Quarantine,
		done:       make(chan struct{}),
		legs:       make(map[*Endpoint]portLeg),
		bySrc:      make(map[netip.AddrPort]*Endpoint),
		waiting:    make(map[netip.Addr]map[*Endpoint]struct{}),
		recent:     make(map[netip.AddrPort]finishedLeg),
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	if p.quarantine == 0 {
		p.quarantine = DefaultQuarantine
	}
	p.startIO()
	return p, nil
}

// LocalAddr returns the address the port is bound to.
func (p *SharedPort) LocalAddr() netip.AddrPort { return p.local }

// Stats returns the port's counters.
func (p *SharedPort) Stats() SharedPortStats {
	p.mu.RLock()
	legs := len(p.legs)
	p.mu.RUnlock()
	return SharedPortStats{
		Legs:      legs,
		Received:  p.received.Load(),
		Unknown:   p.unknown.Load(),
		Ambiguous: p.ambiguous.Load(),
		Stale:     p.stale.Load(),
	}
}

// WriteToUDPAddrPort sends b to addr from the port: what a leg relays, and
// music where sends are not batched.
func (p *SharedPort) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	return p.out.WriteToUDPAddrPort(b, addr)
}

// NewEndpoint makes a call leg on the port: an Endpoint as NewEndpoint
// makes one, whose packets leave from the port and which receives what
// the port attributes to it (see SharedPort). opts.Scheduler must be nil
// or the port's. Close the endpoint before the port.
//
// Errors: ErrInvalidArgument, ErrClosed (the port is closed).
func (p *SharedPort) NewEndpoint(opts EndpointOptions) (*Endpoint, error) {
	if opts.Scheduler != nil && opts.Scheduler != p.sched {
		return nil, fmt.Errorf("%w: EndpointOptions.Scheduler is not the shared port's", ErrInvalidArgument)
	}
	opts.Scheduler = p.sched
	e, err := newEndpoint(nil, p.local, opts)
	if err != nil {
		return nil, err
	}
	e.shared, e.out = p, p
	close(e.done) // nothing of the leg's own is read
	if err := p.register(e); err != nil {
		return nil, err
	}
	return e, nil
}

// Close stops reading the port and closes its socket; its endpoints can no
// longer send. It is idempotent and returns nil, or the socket's close
// error the first time.
func (p *SharedPort) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.stopIO()
	<-p.done
	return err
}

// hostsOf returns the hosts a leg sending to remote may latch to.
func hostsOf(remote netip.AddrPort, signal netip.Addr) [2]netip.Addr {
	var h [2]netip.Addr
	if sendable(remote) {
		h[0] = remote.Addr()
	}
	if signal = signal.Unmap(); signal.IsValid() && !signal.IsUnspecified() && signal != h[0] {
		h[1] = signal
	}
	return h
}

func (p *SharedPort) register(e *Endpoint) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.setLocked(e, portLeg{remote: e.remote, hosts: hostsOf(e.remote, e.signal), waiting: true})
	return nil
}

// set records where e sends now (under e.mu): waiting for its peer's first
// packet after SetRemote, or latched to it.
func (p *SharedPort) set(e *Endpoint, remote netip.AddrPort, waiting bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.legs[e]; !ok {
		return // closed meanwhile
	}
	p.setLocked(e, portLeg{remote: remote, hosts: hostsOf(remote, e.signal), waiting: waiting})
}

func (p *SharedPort) setLocked(e *Endpoint, l portLeg) {
	p.forgetLocked(e)
	p.legs[e] = l
	if sendable(l.remote) {
		p.bySrc[l.remote] = e // a later leg with the same address wins
	}
	if l.waiting {
		for _, h := range l.hosts {
			if !h.IsValid() {
				continue
			}
			set := p.waiting[h]
			if set == nil {
				set = make(map[*Endpoint]struct{})
				p.waiting[h] = set
			}
			set[e] = struct{}{}
		}
	}
}

// forgetLocked takes e out of the lookup maps.
func (p *SharedPort) forgetLocked(e *Endpoint) {
	old, ok := p.legs[e]
	if !ok {
		return
	}
	delete(p.legs, e)
	if p.bySrc[old.remote] == e {
		delete(p.bySrc, old.remote)
	}
	if old.waiting {
		for _, h := range old.hosts {
			if set := p.waiting[h]; set != nil {
				delete(set, e)
				if len(set) == 0 {
					delete(p.waiting, h)
				}
			}
		}
	}
}

// unregister takes a closing leg off the port, quarantines its address and
// returns once no datagram is being handed to it.
func (p *SharedPort) unregister(e *Endpoint, remote netip.AddrPort, ssrc uint32, hasSSRC bool) {
	now := time.Now()
	p.mu.Lock()
	p.forgetLocked(e)
	for len(p.fifo) > 0 && !now.Before(p.fifo[0].until) {
		old := p.fifo[0]
		p.fifo[0] = recentAddr{}
		p.fifo = p.fifo[1:]
		if q, ok := p.recent[old.addr]; ok && q.until.Equal(old.until) {
			delete(p.recent, old.addr)
		}
	}
	if sendable(remote) {
		until := now.Add(p.quarantine)
		p.recent[remote] = finishedLeg{until: until, ssrc: ssrc, hasSSRC: hasSSRC}
		p.fifo = append(p.fifo, recentAddr{addr: remote, until: until})
	}
	p.mu.Unlock()
	p.handling.Lock()
	//lint:ignore SA2001 an empty critical section: waits for dispatch
	p.handling.Unlock()
}

// dispatch hands a datagram read on the port to the leg it belongs to, or
// drops and counts it (see SharedPort for the rules).
func (p *SharedPort) dispatch(pkt []byte, src netip.AddrPort) {
	p.handling.Lock()
	defer p.handling.Unlock()
	e, why := p.lookup(pkt, src)
	if e == nil {
		why.Add(1)
		return
	}
	p.received.Add(1)
	e.handle(pkt, src)
}

// lookup finds the leg a datagram from src belongs to, or the counter of
// why it belongs to none.
func (p *SharedPort) lookup(pkt []byte, src netip.AddrPort) (*Endpoint, *atomic.Uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	e := p.bySrc[src]
	if len(p.recent) > 0 {
		if q, ok := p.recent[src]; ok && time.Now().Before(q.until) {
			if q.hasSSRC && len(pkt) >= rtpHeaderSize && binary.BigEndian.Uint32(pkt[8:12]) == q.ssrc {
				return nil, &p.stale // the finished call's stream, whoever has the address now
			}
			if e == nil && !q.hasSSRC {
				return nil, &p.stale // nothing tells it from the finished call: never latch on it
			}
		}
	}
	if e != nil {
		return e, nil
	}
	set := p.waiting[src.Addr()]
	switch len(set) {
	case 0:
		return nil, &p.unknown
	case 1:
		for c := range set {
			return c, nil
		}
	}
	return nil, &p.ambiguous
}

// readLoop is the portable read path: one goroutine reads the port through
// Go's netpoller until it is closed.
func (p *SharedPort) readLoop() {
	defer close(p.done)
	readUDP(p.conn, p.logger, p.local, &p.unknown, nil, p.dispatch)
}

// startNetpoll is the portable path: a goroutine reads conn, packets leave
// through it.
func (p *SharedPort) startNetpoll() {
	p.out = p.conn
	go p.readLoop()
}
