package siptransport

import (
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxPeers bounds the source addresses a Listener remembers for Drain: a
// scan from many addresses must not grow it without end. A sender past the
// bound is only not pinned at shutdown (see Pin).
const maxPeers = 1 << 16

// pollInterval is how often a busy listener looks at its socket, pollIdle
// how many empty looks in a row make it wait for the kernel again, and
// pollBusy how close two wake-ups must come for it to start looking.
const (
	pollInterval = 250 * time.Microsecond
	pollIdle     = 8
	pollBusy     = time.Millisecond
)

// Listener is a UDP socket as sipgo's read loop sees it. It remembers where
// datagrams came from and, once drained, takes nothing more in, so that a
// shutdown can stop the socket without sipgo opening new ones behind it
// (see Drain and Pin).
//
// Under load it looks at the socket on a clock rather than being woken for
// each datagram. Waking an idle Go program costs its scheduler more CPU
// than a SIP message's own work, and a park server at a thousand cycles a
// second is idle between most of its seven thousand datagrams: reading on
// a 250 µs clock took the server's CPU per cycle from 744 to 678 µs on
// average there, and from 1,112 to 936 µs at 500 cycles a second, with the
// p99 setup unchanged (BENCHMARKS.md, issue 16, goals 2 and 5). So once
// datagrams come less than pollBusy apart, the listener takes what the
// socket holds without waiting and, when it is empty, sleeps pollInterval
// in the kernel (not on a Go timer, whose wake-up is what costs, and which
// rounds up to a millisecond) before looking again; after pollIdle empty
// looks it waits for the kernel's wake-up once more. A datagram waits at
// most pollInterval longer. A listener with a few messages a second, as a
// phone's, never polls, nor one in a program with a single P
// (GOMAXPROCS=1), where the sleep would stop everything else.
type Listener struct {
	net.PacketConn
	served chan struct{} // closed by Stopped when the read loop has returned
	poll   *pollReader   // nil where the socket cannot be read without waiting
	busy   int           // empty looks left before blocking again; read loop only
	woken  time.Time     // when a blocking read last returned; read loop only
	// busyGap is pollBusy; tests make it longer, so that a slow machine
	// cannot make two reads of queued datagrams look far apart.
	busyGap time.Duration

	mu       sync.Mutex
	reading  bool // the read loop is inside ReadFrom, between datagrams
	draining bool
	waiters  []chan struct{}
	// peers are the source addresses of the datagrams handed to sipgo:
	// the keys under which its read loop filed the socket in the UDP
	// connection pool, where they too stay while the listener lives.
	peers map[string]struct{}
}

// NewListener wraps c for sipgo's ServeUDP.
func NewListener(c net.PacketConn) *Listener {
	return &Listener{PacketConn: c, served: make(chan struct{}), poll: newPollReader(c), busyGap: pollBusy, peers: make(map[string]struct{})}
}

// ReadFrom reads the next datagram for sipgo. Once Drain has begun it drops
// every datagram and returns only the socket's error.
func (l *Listener) ReadFrom(b []byte) (int, net.Addr, error) {
	l.mu.Lock()
	l.reading = true
	for _, w := range l.waiters {
		close(w)
	}
	l.waiters = nil
	l.mu.Unlock()
	for {
		n, addr, err := l.read(b)
		l.mu.Lock()
		if err == nil && l.draining {
			l.mu.Unlock()
			continue
		}
		if err == nil && len(l.peers) < maxPeers {
			l.peers[addr.String()] = struct{}{}
		}
		l.reading = false
		l.mu.Unlock()
		return n, addr, err
	}
}

// read is the next datagram: looked for on a clock while the socket is
// busy (see Listener), from a blocking read otherwise.
func (l *Listener) read(b []byte) (int, net.Addr, error) {
	for l.poll != nil && l.busy > 0 {
		n, addr, ok, err := l.poll.read(b)
		if err != nil {
			return 0, nil, err
		}
		if ok {
			l.busy = pollIdle
			return n, addr, nil
		}
		if l.busy--; l.busy > 0 {
			l.poll.sleep(pollInterval)
		}
	}
	n, addr, err := l.PacketConn.ReadFrom(b)
	if err == nil && l.poll != nil && runtime.GOMAXPROCS(0) > 1 {
		// Two datagrams within pollBusy of each other make the socket busy;
		// a phone's listener, a few messages a second, never polls. With
		// one P the sleep would hold the program's only P: nothing else
		// runs meanwhile, and the collector, which marks in idle time,
		// took twice as long to mark (BENCHMARKS.md, issue 16, goal 2).
		now := time.Now()
		if now.Sub(l.woken) < l.busyGap {
			l.busy = pollIdle
		}
		l.woken = now
	}
	return n, addr, err
}

// Stopped records that sipgo's read loop has returned; call it once, when
// ServeUDP does. Whoever waits on Reading stops waiting.
func (l *Listener) Stopped() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.served)
	for _, w := range l.waiters {
		close(w)
	}
	l.waiters = nil
}

// Reading returns a channel closed once the read loop is inside ReadFrom
// (or has stopped): sipgo files the socket for sending only once it reads
// it, so a request sent before would fail to bind the same address.
func (l *Listener) Reading() <-chan struct{} {
	ch := make(chan struct{})
	l.mu.Lock()
	select {
	case <-l.served:
		close(ch)
		l.mu.Unlock()
		return ch
	default:
	}
	if l.reading {
		close(ch)
	} else {
		l.waiters = append(l.waiters, ch)
	}
	l.mu.Unlock()
	return ch
}

// Drain stops handing datagrams to sipgo and waits until its read loop is
// back in ReadFrom (or gone), so that every datagram it read before has been
// dispatched and its sender filed in the connection pool. It returns the
// senders.
func (l *Listener) Drain() []string {
	l.mu.Lock()
	l.draining = true
	l.mu.Unlock()
	select {
	case <-l.Reading():
	case <-l.served:
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	peers := make([]string, 0, len(l.peers))
	for p := range l.peers {
		peers = append(peers, p)
	}
	return peers
}

// Pin points the listener's own address and peers at a stand-in for the
// listener in sipgo's UDP connection pool, and returns how many entries
// that makes.
//
// sipgo handles every request it reads on a goroutine of its own, which
// looks the sender up in the pool to answer it, and a request sent with the
// listener's address as its local address looks that address up. When the
// read loop stops it removes the listener from the pool, and closing the
// user agent clears the pool. A lookup that misses makes sipgo bind a new
// socket, with a read goroutine, that only clearing the pool again would
// close: a request read just before a shutdown and handled just after it
// (sipgo does not wait for its handlers) would leak one.
//
// The stand-in is a connection on the same socket that the read loop does
// not own, so it leaves it in the pool: a late lookup finds it, and its
// write goes out while the socket is open and fails once it is closed.
func (l *Listener) Pin(pool *sip.ConnectionPool, peers []string) int {
	addr := l.LocalAddr().String()
	standIn := &sip.UDPConnection{PacketConn: l, PacketAddr: addr, Listener: true}
	keys := map[string]struct{}{addr: {}}
	pool.Add(addr, standIn)
	for _, p := range peers {
		keys[p] = struct{}{}
		pool.Add(p, standIn)
	}
	return len(keys)
}
