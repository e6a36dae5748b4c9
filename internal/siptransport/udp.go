package siptransport

import (
	"net"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// maxPeers bounds the source addresses a Listener remembers for Drain: a
// scan from many addresses must not grow it without end. A sender past the
// bound is only not pinned at shutdown (see Pin).
const maxPeers = 1 << 16

// Listener is a UDP socket as sipgo's read loop sees it. It remembers where
// datagrams came from and, once drained, takes nothing more in, so that a
// shutdown can stop the socket without sipgo opening new ones behind it
// (see Drain and Pin).
type Listener struct {
	net.PacketConn
	served chan struct{} // closed by Stopped when the read loop has returned

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
	return &Listener{PacketConn: c, served: make(chan struct{}), peers: make(map[string]struct{})}
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
		n, addr, err := l.PacketConn.ReadFrom(b)
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
