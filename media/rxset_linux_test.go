//go:build linux

package media

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// readSetCount returns the number of the scheduler's epoll sets running.
func readSetCount(t *testing.T, s *Scheduler) int {
	t.Helper()
	s.rx.mu.Lock()
	defer s.rx.mu.Unlock()
	n := 0
	for _, r := range s.rx.runs {
		if r != nil {
			n++
		}
	}
	return n
}

func TestEndpointLeavesNetpoller(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	peer := newPhone(t)
	conn := listenLoopback(t)
	e, err := NewEndpoint(conn, EndpointOptions{Remote: peer.addr(), Codec: PCMU, Scheduler: s})
	require.NoError(t, err)
	require.NotNil(t, e.io.raw, "the Linux path reads a duplicate descriptor")
	_, err = conn.WriteToUDPAddrPort([]byte{1}, peer.addr())
	require.ErrorIs(t, err, net.ErrClosed, "the caller's conn is closed, so the runtime no longer polls it")
	require.Equal(t, addrOf(conn), e.LocalAddr())

	// Music out, symmetric RTP in: both directions work on the duplicate.
	require.NoError(t, e.PlayMusic(testFrames(PCMU, 1)))
	require.Equal(t, e.SSRC(), peer.read().SSRC)
	probe := newPhone(t)
	probe.sendTo(e.LocalAddr(), probe.packet(0, true, make([]byte, SamplesPerFrame)))
	require.Equal(t, e.SSRC(), probe.read().SSRC)
	require.Equal(t, probe.addr(), e.Remote())

	require.Equal(t, 1, readSetCount(t, s))
	require.NoError(t, e.Close())
	require.Equal(t, 1, readSetCount(t, s), "the set runs on for the next leg")
	require.NoError(t, e.Close())
	require.NoError(t, s.Close())
	require.Equal(t, 0, readSetCount(t, s), "the scheduler's Close stops it")
}

func TestEndpointPortableIO(t *testing.T) {
	verifyNoLeaks(t)
	s := NewScheduler(SchedulerOptions{})
	s.portableIO = true
	t.Cleanup(func() { _ = s.Close() })
	peer := newPhone(t)
	e := newTestEndpoint(t, EndpointOptions{Remote: peer.addr(), Codec: PCMA, Scheduler: s})
	require.Nil(t, e.io.raw)
	require.NoError(t, e.PlayMusic(testFrames(PCMA, 1)))
	require.Equal(t, e.SSRC(), peer.read().SSRC)
	peer.sendTo(e.LocalAddr(), peer.packet(8, false, make([]byte, SamplesPerFrame)))
	peer.read() // music goes on after the packet
	require.Equal(t, 0, readSetCount(t, s))
}

// TestEndpointCloseWhileReceiving closes legs whose sockets are in an epoll
// set and have packets queued and arriving, while other legs of the same
// set go on; the descriptor numbers freed are reused by new legs, which must
// see only their own packets.
func TestEndpointCloseWhileReceiving(t *testing.T) {
	verifyNoLeaks(t)
	s := NewScheduler(SchedulerOptions{Shards: 2})
	t.Cleanup(func() { _ = s.Close() })
	flood := newPhone(t)
	pkt := flood.packet(0, false, make([]byte, SamplesPerFrame))

	stay := newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); wg.Wait() })
	for round := range 20 {
		legs := make([]*Endpoint, 8)
		for i := range legs {
			var err error
			legs[i], err = NewEndpoint(listenLoopback(t), EndpointOptions{Codec: PCMU, Scheduler: s})
			require.NoError(t, err)
			require.NotNil(t, legs[i].io.raw)
		}
		// Packets queued before, and arriving during, the close.
		for _, e := range append(legs, stay) {
			for range 4 {
				flood.sendTo(e.LocalAddr(), pkt)
			}
		}
		wg.Go(func() {
			for _, e := range legs {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = flood.conn.WriteToUDPAddrPort(pkt, e.LocalAddr())
			}
		})
		for i, e := range legs {
			if (i+round)%2 == 0 {
				require.NoError(t, e.Close())
			}
		}
		for _, e := range legs {
			require.NoError(t, e.Close())
			received := e.Stats().Received
			_, _ = flood.conn.WriteToUDPAddrPort(pkt, e.LocalAddr()) // to a closed port
			require.Equal(t, received, e.Stats().Received, "nothing is read after Close")
		}
	}
	// The leg that stayed still reads: a packet from a new address moves it.
	probe := newPhone(t)
	probe.sendTo(stay.LocalAddr(), probe.packet(0, false, make([]byte, SamplesPerFrame)))
	require.NoError(t, stay.PlayMusic(testFrames(PCMU, 1)))
	require.Equal(t, stay.SSRC(), probe.read().SSRC)
	require.Equal(t, probe.addr(), stay.Remote())
}

// TestEndpointSpreadsOverSets checks that legs go to the least loaded of
// the scheduler's sets, that a set outlives its last leg while the
// scheduler is open, and that after the scheduler's Close each set stops
// with its last leg.
func TestEndpointSpreadsOverSets(t *testing.T) {
	verifyNoLeaks(t)
	s := NewScheduler(SchedulerOptions{Shards: 3})
	t.Cleanup(func() { _ = s.Close() })
	legs := make([]*Endpoint, 6)
	for i := range legs {
		legs[i] = newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	}
	require.Equal(t, 3, readSetCount(t, s))
	runs := append([]*rxRun(nil), s.rx.runs...)
	for _, r := range runs {
		require.Equal(t, 2, r.n)
	}
	for _, e := range legs[:5] {
		require.NoError(t, e.Close())
	}
	require.Equal(t, 3, readSetCount(t, s), "idle sets wait for the next legs")
	legs[0] = newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	require.NotNil(t, legs[0].io.raw)
	require.Contains(t, runs, legs[0].io.run, "a running set takes it, none is started")
	require.NotSame(t, legs[5].io.run, legs[0].io.run, "the least loaded set")

	require.NoError(t, s.Close())
	require.Equal(t, 2, readSetCount(t, s), "Close stops the idle set at once")
	require.NoError(t, legs[5].Close())
	require.Equal(t, 1, readSetCount(t, s), "the others with their last leg")
	require.NoError(t, legs[0].Close())
	require.Equal(t, 0, readSetCount(t, s))
}

// A set left without legs stops after a while unless a leg comes back.
func TestIdleSetStops(t *testing.T) {
	verifyNoLeaks(t)
	s := NewScheduler(SchedulerOptions{Shards: 1})
	t.Cleanup(func() { _ = s.Close() })
	s.rx.linger = time.Hour
	e := newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	run := e.io.run
	require.NoError(t, e.Close())
	e = newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	require.Same(t, run, e.io.run, "back before the linger ended: the same set")

	s.rx.mu.Lock()
	s.rx.linger = time.Millisecond
	s.rx.mu.Unlock()
	require.NoError(t, e.Close())
	<-run.done // stopped, with nobody closing the scheduler
	require.Equal(t, 0, readSetCount(t, s))
	e = newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	require.NotSame(t, run, e.io.run, "a new set for the next leg")
	require.Equal(t, 1, readSetCount(t, s))
}

func TestRawSocketAddressFamilies(t *testing.T) {
	v4 := listenLoopback(t)
	raw4, err := dupSocket(v4)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw4.close() })
	require.Equal(t, unix.AF_INET, raw4.family)

	_, err = raw4.WriteToUDPAddrPort([]byte{1}, netip.MustParseAddrPort("[::1]:9"))
	require.ErrorIs(t, err, unix.EAFNOSUPPORT, "an IPv4 socket cannot reach IPv6")
	_, err = raw4.WriteToUDPAddrPort([]byte{1}, netip.AddrPort{})
	require.ErrorIs(t, err, unix.EAFNOSUPPORT)

	// A dual-stack socket sends to IPv4 through an IPv4-mapped address,
	// and the reader sees the sender as plain IPv4 once unmapped.
	v6, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6unspecified})
	if err != nil {
		t.Skip("no IPv6:", err)
	}
	t.Cleanup(func() { _ = v6.Close() })
	raw6, err := dupSocket(v6)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw6.close() })
	require.Equal(t, unix.AF_INET6, raw6.family)
	n, err := raw6.WriteToUDPAddrPort([]byte("hello"), addrOf(v4))
	require.NoError(t, err)
	require.Equal(t, 5, n)
	buf := make([]byte, 16)
	n, src, err := v4.ReadFromUDPAddrPort(buf)
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
	require.Equal(t, addrOf(v6).Port(), src.Port())

	_, err = v4.WriteToUDPAddrPort([]byte("back"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), addrOf(v6).Port()))
	require.NoError(t, err)
	// The duplicate is non-blocking like the original: wait for the datagram.
	fds := []unix.PollFd{{Fd: int32(raw6.fd), Events: unix.POLLIN}}
	_, err = unix.Poll(fds, 5000)
	require.NoError(t, err)
	n, src, err = raw6.recvFrom(buf)
	require.NoError(t, err)
	require.Equal(t, "back", string(buf[:n]))
	require.Equal(t, addrOf(v4), unmapAddrPort(src))

	_, _, err = raw6.recvFrom(buf)
	require.ErrorIs(t, err, unix.EAGAIN, "non-blocking: nothing queued is EAGAIN, not a wait")
	require.NoError(t, raw6.close())
	_, err = raw6.WriteToUDPAddrPort([]byte{1}, addrOf(v4))
	require.ErrorIs(t, err, net.ErrClosed)
	_, _, err = raw6.recvFrom(buf)
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestRawSocketAllocatesNothing(t *testing.T) {
	a, b := listenLoopback(t), listenLoopback(t)
	raw, err := dupSocket(a)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.close() })
	dst := addrOf(b)
	pkt := make([]byte, rtpHeaderSize+SamplesPerFrame)
	buf := make([]byte, readBufferSize)
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = raw.WriteToUDPAddrPort(pkt, addrOf(a))
		_, _, _ = raw.recvFrom(buf)
		_, _ = raw.WriteToUDPAddrPort(pkt, dst)
	})
	require.Zero(t, allocs)
}
