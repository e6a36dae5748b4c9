package media

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// forEachIOPath runs f on the platform's read and send path for shared
// ports ("raw": epoll and sendmmsg on Linux) and on the portable one.
func forEachIOPath(t *testing.T, f func(t *testing.T, s *Scheduler)) {
	for _, path := range []string{"raw", "portable"} {
		t.Run(path, func(t *testing.T) {
			verifyNoLeaks(t)
			s := NewScheduler(SchedulerOptions{})
			s.portableIO = path == "portable"
			t.Cleanup(func() { _ = s.Close() })
			f(t, s)
		})
	}
}

func newTestSharedPort(t *testing.T, s *Scheduler) *SharedPort {
	t.Helper()
	p, err := NewSharedPort(listenLoopback(t), SharedPortOptions{Scheduler: s})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func newSharedEndpoint(t *testing.T, p *SharedPort, opts EndpointOptions) *Endpoint {
	t.Helper()
	e, err := p.NewEndpoint(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// waitFor polls cond for up to 5 s: a datagram sent on loopback is read by
// another goroutine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// readFrom returns the phone's next datagram's source and RTP SSRC.
func (p *phone) readFrom() (netip.AddrPort, uint32) {
	p.t.Helper()
	buf := make([]byte, 1500)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, src, err := p.conn.ReadFromUDPAddrPort(buf)
	require.NoError(p.t, err)
	require.GreaterOrEqual(p.t, n, rtpHeaderSize)
	v, ok := parseRTP(buf[:n])
	require.True(p.t, ok)
	return unmapAddrPort(src), v.ssrc
}

func TestSharedPortLegsHearOnlyTheirOwnStream(t *testing.T) {
	forEachIOPath(t, func(t *testing.T, s *Scheduler) {
		port := newTestSharedPort(t, s)
		a, b := newPhone(t), newPhone(t)
		b.ssrc = 0x5eed
		ea := newSharedEndpoint(t, port, EndpointOptions{Remote: a.addr(), Codec: PCMU})
		eb := newSharedEndpoint(t, port, EndpointOptions{Remote: b.addr(), Codec: PCMU})
		require.Equal(t, port.LocalAddr(), ea.LocalAddr())
		require.Same(t, port, ea.SharedPort())
		require.NotEqual(t, ea.SSRC(), eb.SSRC())
		require.NoError(t, ea.PlayMusic(testFrames(PCMU, 3)))
		require.NoError(t, eb.PlayMusic(testFrames(PCMU, 3)))

		for _, c := range []struct {
			ph *phone
			e  *Endpoint
		}{{a, ea}, {b, eb}} {
			for range 10 {
				src, ssrc := c.ph.readFrom()
				require.Equal(t, port.LocalAddr(), src)
				require.Equal(t, c.e.SSRC(), ssrc)
			}
		}

		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		for range 2 {
			b.sendTo(port.LocalAddr(), b.packet(0, false, make([]byte, 160)))
		}
		waitFor(t, "three packets read", func() bool { return port.Stats().Received == 3 })
		require.EqualValues(t, 1, ea.Stats().Received)
		require.EqualValues(t, 2, eb.Stats().Received)
		require.Equal(t, SharedPortStats{Legs: 2, Received: 3}, port.Stats())
	})
}

func TestSharedPortDropsStrayPackets(t *testing.T) {
	forEachIOPath(t, func(t *testing.T, s *Scheduler) {
		port := newTestSharedPort(t, s)
		a, b, stranger := newPhone(t), newPhone(t), newPhone(t)
		ea := newSharedEndpoint(t, port, EndpointOptions{Remote: a.addr(), Codec: PCMU})
		newSharedEndpoint(t, port, EndpointOptions{Remote: b.addr(), Codec: PCMU})

		// While both legs wait for their peers, a packet from another port
		// of their host could be either's: dropped.
		stranger.sendTo(port.LocalAddr(), stranger.packet(0, false, make([]byte, 160)))
		waitFor(t, "the ambiguous packet", func() bool { return port.Stats().Ambiguous == 1 })

		// Once both have heard their peers, it is nobody's.
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		b.sendTo(port.LocalAddr(), b.packet(0, false, make([]byte, 160)))
		waitFor(t, "both peers' packets", func() bool { return port.Stats().Received == 2 })
		stranger.sendTo(port.LocalAddr(), stranger.packet(0, false, make([]byte, 160)))
		waitFor(t, "the unknown packet", func() bool { return port.Stats().Unknown == 1 })
		require.Equal(t, a.addr(), ea.Remote(), "a latched leg does not move")

		// A's call ends; its late packets are dropped as stale.
		require.NoError(t, ea.Close())
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		waitFor(t, "the finished call's packet", func() bool { return port.Stats().Stale == 1 })

		// A's next call from the same address hears A's new stream, not
		// the old one's late packets.
		ea2 := newSharedEndpoint(t, port, EndpointOptions{Remote: a.addr(), Codec: PCMU})
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		waitFor(t, "the old stream's packet", func() bool { return port.Stats().Stale == 2 })
		a.ssrc++
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		waitFor(t, "the new stream's packet", func() bool { return ea2.Stats().Received == 1 })
		require.Equal(t, SharedPortStats{Legs: 2, Received: 3, Unknown: 1, Ambiguous: 1, Stale: 2}, port.Stats())
	})
}

func TestSharedPortDropsStraysOfACallNeverHeard(t *testing.T) {
	forEachIOPath(t, func(t *testing.T, s *Scheduler) {
		port := newTestSharedPort(t, s)
		a := newPhone(t)
		// The leg's peer sent nothing, so its SSRC is unknown: anything
		// from its address after it ended is stale, and never latched by
		// a waiting leg of the same host.
		ea := newSharedEndpoint(t, port, EndpointOptions{Remote: a.addr(), Codec: PCMU})
		require.NoError(t, ea.Close())
		waiting := newSharedEndpoint(t, port, EndpointOptions{Remote: netip.AddrPortFrom(a.addr().Addr(), 9), Codec: PCMU})
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		waitFor(t, "the stale packet", func() bool { return port.Stats().Stale == 1 })
		require.Zero(t, waiting.Stats().Received)
	})
}

func TestSharedPortLatchesBehindNAT(t *testing.T) {
	t.Run("another port", func(t *testing.T) {
		forEachIOPath(t, func(t *testing.T, s *Scheduler) {
			port := newTestSharedPort(t, s)
			sdp, real, other := newPhone(t), newPhone(t), newPhone(t)
			// The SDP names one port; the phone (its NAT) sends from another.
			e := newSharedEndpoint(t, port, EndpointOptions{Remote: sdp.addr(), Codec: PCMU})
			require.NoError(t, e.PlayMusic(testFrames(PCMU, 3)))
			real.sendTo(port.LocalAddr(), real.packet(0, false, make([]byte, 160)))
			waitFor(t, "the latch", func() bool { return e.Remote() == real.addr() })
			_, ssrc := real.readFrom()
			require.Equal(t, e.SSRC(), ssrc)
			require.EqualValues(t, 1, e.Stats().RemoteChanges)

			// Latched: a third port of the host is not the peer.
			other.sendTo(port.LocalAddr(), other.packet(0, false, make([]byte, 160)))
			waitFor(t, "the unknown packet", func() bool { return port.Stats().Unknown == 1 })
			require.Equal(t, real.addr(), e.Remote())

			// A re-INVITE moving the media makes it wait for its peer anew.
			e.SetRemote(sdp.addr())
			other.sendTo(port.LocalAddr(), other.packet(0, false, make([]byte, 160)))
			waitFor(t, "the new latch", func() bool { return e.Remote() == other.addr() })
		})
	})
	t.Run("another host", func(t *testing.T) {
		forEachIOPath(t, func(t *testing.T, s *Scheduler) {
			port := newTestSharedPort(t, s)
			real := newPhone(t)
			// The SDP names the phone's private address; its signalling and
			// its RTP come from the NAT's public one.
			private := netip.MustParseAddrPort("192.0.2.10:4000")
			e := newSharedEndpoint(t, port, EndpointOptions{Remote: private, Codec: PCMU, SignalingAddr: real.addr().Addr()})
			require.NoError(t, e.PlayMusic(testFrames(PCMU, 3)))
			real.sendTo(port.LocalAddr(), real.packet(0, false, make([]byte, 160)))
			waitFor(t, "the latch", func() bool { return e.Remote() == real.addr() })
			_, ssrc := real.readFrom()
			require.Equal(t, e.SSRC(), ssrc)
		})
	})
}

func TestSharedPortLegRelays(t *testing.T) {
	forEachIOPath(t, func(t *testing.T, s *Scheduler) {
		port := newTestSharedPort(t, s)
		a, b := newPhone(t), newPhone(t)
		ea := newSharedEndpoint(t, port, EndpointOptions{Remote: a.addr(), Codec: PCMU})
		eb := newTestEndpoint(t, EndpointOptions{Remote: b.addr(), Codec: PCMU, Scheduler: s})
		require.NoError(t, ea.PlayMusic(testFrames(PCMU, 3)))
		buf := make([]byte, 1500)
		// next reads a's next packet, checks that it left the shared port
		// under the leg's SSRC and returns its sequence number.
		next := func(wait time.Duration) (uint16, bool) {
			require.NoError(t, a.conn.SetReadDeadline(time.Now().Add(wait)))
			n, src, err := a.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return 0, false
			}
			v, ok := parseRTP(buf[:n])
			require.True(t, ok)
			require.Equal(t, port.LocalAddr(), unmapAddrPort(src))
			require.Equal(t, ea.SSRC(), v.ssrc)
			return v.seq, true
		}
		seq, ok := next(5 * time.Second)
		require.True(t, ok, "music")
		r, err := Bridge(ea, eb)
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })

		// b -> a leaves from the shared port, and continues the music's
		// sequence: a batched music packet never follows Bridge.
		b.sendTo(eb.LocalAddr(), b.packet(0, false, make([]byte, 160)))
		waitFor(t, "the relayed packet", func() bool { return r.Stats().BToA.Packets == 1 })
		got := 0
		for {
			s, ok := next(200 * time.Millisecond)
			if !ok {
				break
			}
			require.Equal(t, seq+1, s, "sequence numbers in order, none repeated")
			seq = s
			got++
		}
		require.Positive(t, got)
		// a -> b is read from the shared port.
		a.sendTo(port.LocalAddr(), a.packet(0, false, make([]byte, 160)))
		_, ssrc := b.readFrom()
		require.Equal(t, eb.SSRC(), ssrc)
	})
}

func TestSharedPortOptions(t *testing.T) {
	s := newTestScheduler(t)
	_, err := NewSharedPort(nil, SharedPortOptions{Scheduler: s})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewSharedPort(listenLoopback(t), SharedPortOptions{})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = NewSharedPort(listenLoopback(t), SharedPortOptions{Scheduler: s, Quarantine: -time.Second})
	require.ErrorIs(t, err, ErrInvalidArgument)

	p := newTestSharedPort(t, s)
	_, err = p.NewEndpoint(EndpointOptions{Codec: PCMU, Scheduler: NewScheduler(SchedulerOptions{Shards: 1})})
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = p.NewEndpoint(EndpointOptions{Codec: 99})
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	_, err = p.NewEndpoint(EndpointOptions{Codec: PCMU})
	require.ErrorIs(t, err, ErrClosed)
}

// FuzzSharedPortDemux hands the port's demultiplexer datagrams from
// sources a fuzzer picks among a few hosts and any port, with any bytes,
// and checks that each lands in exactly one counter, and that a leg only
// ever hears (and latches to) a source of a host it expects.
func FuzzSharedPortDemux(f *testing.F) {
	rtpPkt := func(ssrc uint32) []byte {
		b := make([]byte, rtpHeaderSize+160)
		b[0] = 0x80
		b[8], b[9], b[10], b[11] = byte(ssrc>>24), byte(ssrc>>16), byte(ssrc>>8), byte(ssrc)
		return b
	}
	f.Add(uint8(0), uint16(4000), rtpPkt(1))
	f.Add(uint8(1), uint16(4000), rtpPkt(2))
	f.Add(uint8(1), uint16(4444), rtpPkt(2))
	f.Add(uint8(2), uint16(4000), rtpPkt(7))
	f.Add(uint8(2), uint16(4000), rtpPkt(8))
	f.Add(uint8(3), uint16(5000), rtpPkt(3))
	f.Add(uint8(4), uint16(1), []byte{0x80})
	hosts := []netip.Addr{
		netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3"),
		netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.9"),
	}
	f.Fuzz(func(t *testing.T, host uint8, srcPort uint16, pkt []byte) {
		s := NewScheduler(SchedulerOptions{Shards: 1})
		defer s.Close()
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		port, err := NewSharedPort(conn, SharedPortOptions{Scheduler: s})
		require.NoError(t, err)
		defer port.Close()
		ap := func(h int, p uint16) netip.AddrPort { return netip.AddrPortFrom(hosts[h], p) }
		type leg struct {
			e     *Endpoint
			hosts []netip.Addr
		}
		mk := func(remote netip.AddrPort, signal netip.Addr) leg {
			e, err := port.NewEndpoint(EndpointOptions{Remote: remote, Codec: PCMU, SignalingAddr: signal})
			require.NoError(t, err)
			return leg{e, []netip.Addr{remote.Addr(), signal}}
		}
		legs := []leg{
			mk(ap(0, 4000), hosts[3]), // behind NAT: signalling from 198.51.100.1
			mk(ap(1, 4000), netip.Addr{}),
			mk(ap(1, 4002), netip.Addr{}),
		}
		// A finished call at 10.0.0.3:4000 whose peer sent SSRC 7.
		old := mk(ap(2, 4000), netip.Addr{})
		old.e.handle(rtpPkt(7), ap(2, 4000))
		require.NoError(t, old.e.Close())
		defer func() {
			for _, l := range legs {
				_ = l.e.Close()
			}
		}()

		src := ap(int(host)%len(hosts), srcPort)
		before := make([]netip.AddrPort, len(legs))
		for i, l := range legs {
			before[i] = l.e.Remote()
		}
		st0 := port.Stats()
		port.dispatch(pkt, src)
		st1 := port.Stats()
		counted := (st1.Received - st0.Received) + (st1.Unknown - st0.Unknown) + (st1.Ambiguous - st0.Ambiguous) + (st1.Stale - st0.Stale)
		require.EqualValues(t, 1, counted)
		for i, l := range legs {
			if r := l.e.Remote(); r != before[i] {
				require.Equal(t, src, r, "leg %d moved elsewhere than the source", i)
				require.Contains(t, l.hosts, src.Addr(), "leg %d latched to a host it does not expect", i)
			}
		}
	})
}
