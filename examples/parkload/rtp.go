package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// packetTime is the G.711 packet time the server's music is paced at.
const packetTime = 20 * time.Millisecond

// rtpPorts hands out the even ports of -rtp-ports on -local, round robin,
// skipping ports some other program (or the server) holds.
type rtpPorts struct {
	ip     netip.Addr
	lo, hi int

	mu   sync.Mutex
	next int
}

func newRTPPorts(ip netip.Addr, lo, hi int) *rtpPorts {
	lo += lo % 2
	return &rtpPorts{ip: ip, lo: lo, hi: hi, next: lo}
}

// listen binds the next free even port, trying each at most once.
func (p *rtpPorts) listen() (*net.UDPConn, error) {
	var conn *net.UDPConn
	err := p.bind(func(port int) bool {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.ip, uint16(port))))
		conn = c
		return err == nil
	})
	return conn, err
}

// bind offers the even ports in turn to try, each at most once, until it
// reports that it bound one.
func (p *rtpPorts) bind(try func(port int) bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range (p.hi-p.lo)/2 + 1 {
		port := p.next
		if p.next += 2; p.next > p.hi {
			p.next = p.lo
		}
		if try(port) {
			return nil
		}
	}
	return fmt.Errorf("no free UDP port in -rtp-ports %d-%d on %s", p.lo, p.hi, p.ip)
}

// sdpOffer is the tool's offer: PCMU and telephone-event on port, sendrecv,
// as a desk phone would send it. Written by hand: it is the same few lines
// for every call, and the server's answer is not needed (the tool only
// listens).
func sdpOffer(ip netip.Addr, port uint16, session uint64) []byte {
	family := "IP4"
	if ip.Is6() {
		family = "IP6"
	}
	id := strconv.FormatUint(session, 10)
	return []byte("v=0\r\n" +
		"o=parkload " + id + " " + id + " IN " + family + " " + ip.String() + "\r\n" +
		"s=parkload\r\n" +
		"c=IN " + family + " " + ip.String() + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(port)) + " RTP/AVP 0 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\n" +
		"a=fmtp:101 0-16\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n")
}

func localPort(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// openLegMedia gives each of a worker's call legs an RTP socket from ports
// and the SDP offer naming it, filling conns and offers (the same length).
// On error the sockets opened so far are closed again.
func openLegMedia(ports *rtpPorts, ip netip.Addr, conns []*net.UDPConn, offers [][]byte) error {
	for i := range conns {
		c, err := ports.listen()
		if err != nil {
			closeLegMedia(conns)
			return err
		}
		conns[i] = c
		offers[i] = sdpOffer(ip, localPort(c), rand.Uint64()>>2)
	}
	return nil
}

// closeLegMedia closes the sockets openLegMedia opened; it may run twice.
func closeLegMedia(conns []*net.UDPConn) {
	for i, c := range conns {
		if c != nil {
			c.Close()
			conns[i] = nil
		}
	}
}

// countPackets reads c until it is closed and only counts: the cycle mode's
// sockets, reused call after call, where what matters is that they are
// drained cheaply.
func countPackets(c *net.UDPConn, n *atomic.Uint64) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		n.Add(1)
	}
}

// window is the hold mode's measurement window, in Unix nanoseconds;
// packets count only when they arrive inside it. Until it is set nothing
// counts (start is the largest time).
type window struct{ start, end atomic.Int64 }

func newWindow() *window {
	w := new(window)
	w.start.Store(1<<63 - 1)
	w.end.Store(1<<63 - 1)
	return w
}

// holdStats are what the receiver saw of one call, read once it has
// stopped.
type holdStats struct {
	total     uint64 // every packet, window or not
	inWindow  uint64
	seqLost   uint64 // sequence numbers skipped inside the window
	first     int64  // Unix ns of the first packet, 0 if none
	beforeAck bool   // the first packet came before our ACK went out
	maxGap    time.Duration
}

// holdStream is the RTP side of one parked call: its local port, and what
// its packets showed.
type holdStream struct {
	port  uint16
	ackAt atomic.Int64 // Unix ns when our ACK went out; 0 before

	// The receiver's alone until it stops.
	stats    holdStats
	last     int64
	lastSeq  uint16
	seqValid bool
}

// holdMeters are shared by every hold stream: the jitter histogram (|Δ −
// 20 ms| between consecutive packets of a call inside the window) and the
// time from ACK to the first packet of music.
type holdMeters struct {
	win        *window
	jitter     AtomicHistogram
	firstAfter AtomicHistogram
	kernelTS   atomic.Bool // arrival times came from the kernel
	// perSecond counts the packets of every call in each second of the
	// window, to tell a steady shortfall from one that grows; set before
	// the window opens.
	perSecond []atomic.Uint64
}

// packet accounts for one datagram that arrived at ts (Unix ns).
func (s *holdStream) packet(m *holdMeters, pkt []byte, ts int64) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return // not RTP
	}
	seq := uint16(pkt[2])<<8 | uint16(pkt[3])
	st := &s.stats
	st.total++
	if st.first == 0 {
		st.first = ts
		if ack := s.ackAt.Load(); ack == 0 {
			st.beforeAck = true
		} else {
			m.firstAfter.Record(time.Duration(ts - ack))
		}
	}
	ws, we := m.win.start.Load(), m.win.end.Load()
	if ts >= ws && ts < we {
		st.inWindow++
		if i := (ts - ws) / int64(time.Second); i < int64(len(m.perSecond)) {
			m.perSecond[i].Add(1)
		}
		if s.last >= ws {
			gap := time.Duration(ts - s.last)
			st.maxGap = max(st.maxGap, gap)
			d := gap - packetTime
			if d < 0 {
				d = -d
			}
			m.jitter.Record(d)
			if s.seqValid {
				if skipped := seq - s.lastSeq - 1; skipped < 1000 {
					st.seqLost += uint64(skipped)
				}
			}
		}
		s.seqValid = true
	}
	s.last, s.lastSeq = ts, seq
}

// The hold receivers -rx names.
const (
	rxAuto    = "auto"    // the ring where this process may open one, else the sockets
	rxRing    = "ring"    // ringReceiver (Linux, CAP_NET_RAW, IPv4)
	rxSockets = "sockets" // each call's socket read (epollReceiver on Linux)
)

// holdReceiver owns the RTP sockets of the hold calls and reads them all.
// open binds one more (before start); start begins reading; stop closes
// every socket and returns once the counts are final.
type holdReceiver interface {
	open() (*holdStream, error)
	start()
	stop()
	// overruns is how many datagrams the receiver itself has lost so far
	// (its ring was full: the tool fell behind, not the server), where it
	// can tell; 0 where it cannot.
	overruns() uint64
}

// goroutineReceiver reads each socket in a goroutine of its own: simple and
// portable, but every packet wakes a goroutine and costs two reads (the
// second one finds the socket empty), which at 2,000 calls is 100,000
// wake-ups a second. Linux uses epollReceiver instead.
type goroutineReceiver struct {
	m     *holdMeters
	ports *rtpPorts
	conns []*net.UDPConn
	subs  []*holdStream
	wg    sync.WaitGroup
}

func newGoroutineReceiver(m *holdMeters, ports *rtpPorts) *goroutineReceiver {
	return &goroutineReceiver{m: m, ports: ports}
}

func (r *goroutineReceiver) open() (*holdStream, error) {
	c, err := r.ports.listen()
	if err != nil {
		return nil, err
	}
	s := &holdStream{port: localPort(c)}
	r.conns = append(r.conns, c)
	r.subs = append(r.subs, s)
	return s, nil
}

func (r *goroutineReceiver) start() {
	for i, c := range r.conns {
		s := r.subs[i]
		r.wg.Go(func() { r.read(c, s) })
	}
}

func (r *goroutineReceiver) read(c *net.UDPConn, s *holdStream) {
	kernel := enableRxTimestamps(c)
	if kernel {
		r.m.kernelTS.Store(true)
	}
	buf := make([]byte, 1500)
	oob := make([]byte, 128)
	for {
		n, oobn, _, _, err := c.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var ts int64
		if kernel {
			ts, _ = rxTimestamp(oob[:oobn])
		}
		if ts == 0 {
			ts = time.Now().UnixNano()
		}
		s.packet(r.m, buf[:n], ts)
	}
}

func (r *goroutineReceiver) overruns() uint64 { return 0 }

func (r *goroutineReceiver) stop() {
	for _, c := range r.conns {
		c.Close()
	}
	r.wg.Wait()
	r.conns = nil
}
