package media

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func listenTestSocket(t *testing.T) *Socket {
	t.Helper()
	s, err := ListenSocket(netip.MustParseAddrPort("127.0.0.1:0"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// waitDiscard discards what reaches s until want datagrams have (loopback
// delivery is quick but not synchronous with the sender's return).
func waitDiscard(t *testing.T, s *Socket, want int) {
	t.Helper()
	got := 0
	require.Eventually(t, func() bool {
		got += s.Discard()
		return got >= want
	}, 5*time.Second, time.Millisecond, "discarded %d of %d", got, want)
	require.Equal(t, want, got)
}

func TestListenSocket(t *testing.T) {
	s := listenTestSocket(t)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), s.LocalAddr().Addr())
	require.NotZero(t, s.LocalAddr().Port(), "the kernel's port is reported")

	_, err := ListenSocket(s.LocalAddr())
	require.Error(t, err, "the port is bound")

	wild, err := ListenSocket(netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	require.NoError(t, err)
	require.NotZero(t, wild.LocalAddr().Port())
	require.NoError(t, wild.Close())
	require.NoError(t, wild.Close(), "Close is idempotent")
}

// A socket outlives its endpoints: the next leg on it is a new stream, and
// what arrived between the two is dropped by Discard, not read by the new
// leg.
func TestSocketEndpointLeavesSocketBound(t *testing.T) {
	verifyNoLeaks(t)
	sched := newTestScheduler(t)
	sock := listenTestSocket(t)
	peer := newPhone(t)

	first, err := NewSocketEndpoint(sock, EndpointOptions{Remote: peer.addr(), Codec: PCMU, Scheduler: sched})
	require.NoError(t, err)
	require.Equal(t, sock.LocalAddr(), first.LocalAddr())
	_, err = NewSocketEndpoint(sock, EndpointOptions{Codec: PCMU, Scheduler: sched})
	require.ErrorIs(t, err, ErrInvalidArgument, "one endpoint at a time")

	peer.sendTo(sock.LocalAddr(), peer.packet(0, false, make([]byte, 160)))
	require.Eventually(t, func() bool { return first.Stats().Received == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, first.PlayMusic(testFrames(PCMU, 1)))
	oldSSRC := peer.read().SSRC
	require.NoError(t, first.Close())
	require.NoError(t, first.Close(), "Close is idempotent")

	// The old call's peer goes on sending for a moment.
	for range 3 {
		peer.sendTo(sock.LocalAddr(), peer.packet(0, false, make([]byte, 160)))
	}
	waitDiscard(t, sock, 3)
	require.Equal(t, uint64(1), first.Stats().Received, "nothing read after Close")

	second, err := NewSocketEndpoint(sock, EndpointOptions{Remote: peer.addr(), Codec: PCMA, Scheduler: sched})
	require.NoError(t, err, "free again once the first endpoint closed")
	peer.sendTo(sock.LocalAddr(), peer.packet(8, false, make([]byte, 160)))
	require.Eventually(t, func() bool { return second.Stats().Received == 1 }, 5*time.Second, time.Millisecond)
	require.NoError(t, second.PlayMusic(testFrames(PCMA, 1)))
	pkt := peer.read()
	for pkt.SSRC == oldSSRC { // a packet of the first leg still in flight
		pkt = peer.read()
	}
	require.Equal(t, second.SSRC(), pkt.SSRC)
	require.Equal(t, uint8(8), pkt.PayloadType)
	require.NoError(t, second.Close())

	// Still bound: the port is not free for anyone else.
	_, err = ListenSocket(sock.LocalAddr())
	require.Error(t, err)
	require.NoError(t, sock.Close())
	again, err := ListenSocket(sock.LocalAddr())
	require.NoError(t, err, "free once the socket is closed")
	require.NoError(t, again.Close())
}

// Every Close of an endpoint on a Socket, not only the first, returns once
// the socket is free for the next one.
func TestSocketFreeWhenAnyCloseReturns(t *testing.T) {
	verifyNoLeaks(t)
	sched := newTestScheduler(t)
	sock := listenTestSocket(t)
	for range 200 {
		e, err := NewSocketEndpoint(sock, EndpointOptions{Codec: PCMU, Scheduler: sched})
		require.NoError(t, err)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() { _ = e.Close() })
		}
		require.NoError(t, e.Close())
		require.False(t, sock.busy.Load(), "free once a Close returned")
		wg.Wait()
	}
}

func TestNewSocketEndpointRejectsBadOptions(t *testing.T) {
	sched := newTestScheduler(t)
	sock := listenTestSocket(t)
	_, err := NewSocketEndpoint(nil, EndpointOptions{Codec: PCMU, Scheduler: sched})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewSocketEndpoint(sock, EndpointOptions{Codec: PCMU})
	require.ErrorIs(t, err, ErrInvalidArgument, "no scheduler")
	e, err := NewSocketEndpoint(sock, EndpointOptions{Codec: PCMU, Scheduler: sched})
	require.NoError(t, err, "a refused endpoint leaves the socket free")
	require.NoError(t, e.Close())
}
