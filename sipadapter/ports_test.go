package sipadapter

import (
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// The ranges here lie below Linux's ephemeral ports (32768 up), so that no
// port-0 socket of a parallel test takes one of them.
var localhost = netip.MustParseAddr("127.0.0.1")

func portOf(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

func TestPortPoolEvenPortsInLRUOrder(t *testing.T) {
	pool, err := NewPortPool(localhost, 10231, 10236) // odd low end: 10232 first
	require.NoError(t, err)
	var conns []*net.UDPConn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for _, want := range []uint16{10232, 10234, 10236} {
		c, err := pool.acquire()
		require.NoError(t, err)
		conns = append(conns, c)
		require.Equal(t, want, portOf(c), "even ports, lowest first")
		require.Equal(t, localhost, c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), "bound on the pool's address")
	}
	require.Equal(t, 3, pool.InUse())
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort)
	require.Equal(t, 3, pool.InUse(), "a refused Acquire takes nothing")

	// Freed 10234 then 10232: they come back in that order, the port freed
	// last rests longest.
	for _, i := range []int{1, 0} {
		port := portOf(conns[i])
		require.NoError(t, conns[i].Close())
		pool.release(port)
	}
	require.Equal(t, 1, pool.InUse())
	for i, want := range []uint16{10234, 10232} {
		c, err := pool.acquire()
		require.NoError(t, err)
		conns[i] = c
		require.Equal(t, want, portOf(c))
	}
	require.Equal(t, 3, pool.InUse())
	for _, c := range conns {
		port := portOf(c)
		require.NoError(t, c.Close())
		pool.release(port)
	}
	require.Zero(t, pool.InUse())
}

// A port another program holds is skipped and stays in the pool.
func TestPortPoolSkipsHeldPort(t *testing.T) {
	held, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(localhost, 10240)))
	require.NoError(t, err)
	pool, err := NewPortPool(localhost, 10240, 10242)
	require.NoError(t, err)

	c, err := pool.acquire()
	require.NoError(t, err)
	require.Equal(t, uint16(10242), portOf(c), "10240 is held elsewhere")
	_, err = pool.acquire()
	require.ErrorIs(t, err, ErrNoRTPPort, "each free port tried once, none bound")

	require.NoError(t, held.Close())
	c2, err := pool.acquire()
	require.NoError(t, err)
	require.Equal(t, uint16(10240), portOf(c2), "retried once free")
	for _, conn := range []*net.UDPConn{c, c2} {
		port := portOf(conn)
		require.NoError(t, conn.Close())
		pool.release(port)
	}
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
