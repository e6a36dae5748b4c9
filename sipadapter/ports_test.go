package sipadapter

import (
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
)

// The ranges here lie below Linux's ephemeral ports (32768 up), so that no
// port-0 socket of a parallel test takes one of them.
var localhost = netip.MustParseAddr("127.0.0.1")

func portOf(s *media.Socket) uint16 { return s.LocalAddr().Port() }

// bindable reports whether another program could bind port now.
func bindable(t *testing.T, port uint16) bool {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localhost, port)))
	if err != nil {
		return false
	}
	require.NoError(t, c.Close())
	return true
}

func TestPortPoolEvenPortsLowestFirst(t *testing.T) {
	pool, err := NewPortPool(localhost, 10231, 10236) // odd low end: 10232 first
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var socks []*media.Socket
	for _, want := range []uint16{10232, 10234, 10236} {
		s, err := pool.acquire()
		require.NoError(t, err)
		socks = append(socks, s)
		require.Equal(t, want, portOf(s), "even ports, lowest first")
		require.Equal(t, localhost, s.LocalAddr().Addr(), "bound on the pool's address")
	}
	require.Equal(t, 3, pool.InUse())
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort)
	require.Equal(t, 3, pool.InUse(), "a refused acquire takes nothing")
	for _, s := range socks {
		pool.release(s)
	}
	require.Zero(t, pool.InUse())
}

// An ended leg's socket stays bound and rests before the next leg gets it:
// a port never bound goes first, a rested socket before that, and a
// resting one only when nothing else is left.
func TestPortPoolQuarantine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pool, err := NewPortPool(localhost, 10330, 10337) // 10330, 10332, 10334, 10336
		require.NoError(t, err)
		defer pool.Close()
		a, err := pool.acquire()
		require.NoError(t, err)
		b, err := pool.acquire()
		require.NoError(t, err)
		pool.release(a)
		require.False(t, bindable(t, portOf(a)), "a released socket stays bound")

		c, err := pool.acquire()
		require.NoError(t, err)
		require.Equal(t, uint16(10334), portOf(c), "a is resting: a port never bound goes first")

		time.Sleep(portQuarantine)
		again, err := pool.acquire()
		require.NoError(t, err)
		require.Same(t, a, again, "rested: the socket itself is handed out again, no new bind")

		pool.release(b)
		d, err := pool.acquire()
		require.NoError(t, err)
		require.Equal(t, uint16(10336), portOf(d))
		early, err := pool.acquire()
		require.NoError(t, err, "nothing else left: a resting socket rather than a refusal")
		require.Same(t, b, early)
		_, err = pool.acquire()
		require.ErrorIs(t, err, ErrNoRTPPort)
		require.Equal(t, 4, pool.InUse())
		for _, s := range []*media.Socket{again, c, d, early} {
			pool.release(s)
		}
		require.Zero(t, pool.InUse())
	})
}

// What the old call's peer sends to a resting socket is not what the next
// leg reads.
func TestPortPoolDiscardsWhatARestingSocketGot(t *testing.T) {
	pool, err := NewPortPool(localhost, 10340, 10340)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	pool.quarantine = 0
	s, err := pool.acquire()
	require.NoError(t, err)
	pool.release(s)
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer peer.Close()
	for range 3 {
		_, err := peer.WriteToUDPAddrPort([]byte("late rtp"), s.LocalAddr())
		require.NoError(t, err)
	}
	// Loopback delivers within the send; a queue still empty here would
	// only make the test pass without testing anything.
	s2, err := pool.acquire()
	require.NoError(t, err)
	require.Same(t, s, s2)
	require.Zero(t, s2.Discard(), "the queue was emptied when handed out")
	pool.release(s2)
}

// Past maxResting an ended leg's socket is closed; Close closes the resting
// ones and whatever is released after it.
func TestPortPoolBoundsAndClosesRestingSockets(t *testing.T) {
	pool, err := NewPortPool(localhost, 10350, 10355) // 10350, 10352, 10354
	require.NoError(t, err)
	pool.maxResting = 1
	a, err := pool.acquire()
	require.NoError(t, err)
	b, err := pool.acquire()
	require.NoError(t, err)
	c, err := pool.acquire()
	require.NoError(t, err)
	pool.release(a)
	pool.release(b)
	require.False(t, bindable(t, portOf(a)), "a rests")
	require.True(t, bindable(t, portOf(b)), "one resting socket at most: b was closed")

	pool.Close()
	pool.Close()
	require.True(t, bindable(t, portOf(a)), "Close closes the resting sockets")
	pool.release(c)
	require.True(t, bindable(t, portOf(c)), "released after Close: closed")
	require.Zero(t, pool.InUse())

	d, err := pool.acquire()
	require.NoError(t, err, "a closed pool still binds ports")
	pool.release(d)
	require.True(t, bindable(t, portOf(d)))
}

// A port another program holds is skipped and stays in the pool.
func TestPortPoolSkipsHeldPort(t *testing.T) {
	held, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localhost, 10240)))
	require.NoError(t, err)
	pool, err := NewPortPool(localhost, 10240, 10242)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	s, err := pool.acquire()
	require.NoError(t, err)
	require.Equal(t, uint16(10242), portOf(s), "10240 is held elsewhere")
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort, "each free port tried once, none bound")

	require.NoError(t, held.Close())
	s2, err := pool.acquire()
	require.NoError(t, err)
	require.Equal(t, uint16(10240), portOf(s2), "retried once free")
	pool.release(s)
	pool.release(s2)
	require.Zero(t, pool.InUse())
}

func TestNewPortPoolRanges(t *testing.T) {
	for _, tc := range []struct {
		lo, hi int
		ok     bool
	}{
		{20000, 29999, true},
		{1024, 1024, true},
		{65534, 65535, true},
		{1023, 2000, false},   // privileged
		{20000, 65536, false}, // past the last port
		{3000, 2000, false},   // backwards
		{10231, 10231, false}, // no even port
	} {
		_, err := NewPortPool(localhost, tc.lo, tc.hi)
		if tc.ok {
			require.NoError(t, err, "%d-%d", tc.lo, tc.hi)
		} else {
			require.Error(t, err, "%d-%d", tc.lo, tc.hi)
		}
	}
}

// A reservation keeps a port for a recall: new legs are refused before
// they take it, the recall (acquireReserved) may, and the reservation stays
// until given back.
func TestPortPoolReservesForRecalls(t *testing.T) {
	pool, err := NewPortPool(localhost, 10320, 10323) // two ports
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	leg, err := pool.acquire()
	require.NoError(t, err)
	require.NoError(t, pool.reserve())
	require.ErrorIs(t, pool.reserve(), ErrNoRTPPort, "one free port, already kept")
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort, "a new leg may not take the kept port")
	recall, err := pool.acquireReserved()
	require.NoError(t, err, "the recall takes it")
	pool.freeConn(recall) // the recall failed: the port comes back, still kept
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort)
	pool.unreserve()
	again, err := pool.acquire()
	require.NoError(t, err)
	pool.freeConn(again)
	pool.freeConn(leg)
	require.Zero(t, pool.InUse())
}
