package main

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/interop"
	"github.com/stretchr/testify/require"
)

// rtpSender returns a function that sends packets with the sequence
// numbers from first up to (not including) end to a port on 127.0.0.1,
// from a socket of its own that the test closes.
func rtpSender(t *testing.T) func(to netip.AddrPort, first, end uint16) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return func(to netip.AddrPort, first, end uint16) {
		for seq := first; seq != end; seq++ {
			_, err := c.WriteToUDPAddrPort(rtpPacket(seq), to)
			require.NoError(t, err)
		}
	}
}

// local is 127.0.0.1:port.
func local(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
}

// rtpPacket is a minimal RTP header with seq, then a G.711 payload.
func rtpPacket(seq uint16) []byte {
	p := make([]byte, 172)
	p[0] = 0x80
	p[2], p[3] = byte(seq>>8), byte(seq)
	return p
}

func TestHoldStreamPacket(t *testing.T) {
	m := &holdMeters{win: newWindow()}
	s := &holdStream{}
	base := time.Now().UnixNano()
	s.ackAt.Store(base)
	m.win.end.Store(base + int64(time.Second))
	m.win.start.Store(base + int64(100*time.Millisecond))
	at := func(ms float64) int64 { return base + int64(ms*float64(time.Millisecond)) }

	s.packet(m, []byte("not rtp at all"), at(1))
	s.packet(m, rtpPacket(10), at(5))   // before the window: counted in total only
	s.packet(m, rtpPacket(11), at(105)) // first in the window: no gap recorded (the one before is outside)
	s.packet(m, rtpPacket(12), at(125)) // on time
	s.packet(m, rtpPacket(15), at(190)) // two lost, a 65 ms gap
	s.packet(m, rtpPacket(16), at(212)) // 2 ms late
	s.packet(m, rtpPacket(17), at(1200))
	st := s.stats
	require.Equal(t, uint64(6), st.total)
	require.Equal(t, uint64(4), st.inWindow)
	require.Equal(t, uint64(2), st.seqLost)
	require.Equal(t, 65*time.Millisecond, st.maxGap)
	require.False(t, st.beforeAck)
	j := m.jitter.Snapshot()
	require.Equal(t, uint64(3), j.Count())
	require.Equal(t, 45*time.Millisecond, j.Max())
	require.InDelta(t, float64(2*time.Millisecond), float64(j.Quantile(0.5)), float64(40*time.Microsecond))
	f := m.firstAfter.Snapshot()
	require.Equal(t, uint64(1), f.Count())
	require.Equal(t, 5*time.Millisecond, f.Max())

	early := &holdStream{}
	early.packet(m, rtpPacket(1), at(2))
	require.True(t, early.stats.beforeAck)
}

func testReceiver(t *testing.T, newRx func(*holdMeters, *rtpPorts) (holdReceiver, error)) {
	m := &holdMeters{win: newWindow()}
	ports := newRTPPorts(netip.MustParseAddr("127.0.0.1"), 47000, 47999)
	rx, err := newRx(m, ports)
	require.NoError(t, err)
	defer rx.stop()
	var streams []*holdStream
	for range 3 {
		s, err := rx.open()
		require.NoError(t, err)
		require.Zero(t, s.port%2, "RTP ports are even")
		s.ackAt.Store(time.Now().UnixNano())
		streams = append(streams, s)
	}
	now := time.Now()
	m.win.end.Store(now.Add(time.Hour).UnixNano())
	m.win.start.Store(now.UnixNano())
	rx.start()

	send := rtpSender(t)
	for seq := range uint16(5) {
		for i, s := range streams {
			if i == 2 && seq == 2 {
				continue // one loss
			}
			send(local(s.port), seq, seq+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	rx.stop()
	require.Equal(t, uint64(5), streams[0].stats.inWindow)
	require.Equal(t, uint64(5), streams[1].stats.inWindow)
	require.Equal(t, uint64(4), streams[2].stats.inWindow)
	require.Equal(t, uint64(1), streams[2].stats.seqLost)
	require.Equal(t, uint64(14-3), m.jitter.Snapshot().Count())
	require.Equal(t, uint64(3), m.firstAfter.Snapshot().Count())
	// Timing is the machine's: only that something plausible came out.
	require.Less(t, m.jitter.Snapshot().Quantile(0.5), 20*time.Millisecond)
}

type newReceiver func(*holdMeters, *rtpPorts) (holdReceiver, error)

// holdReceivers is every receiver this platform has, by name. The packet
// ring needs CAP_NET_RAW: without it the ring is left out, unless
// CALLPARK_INTEROP=1 (CI runs as root), where its absence fails the test.
func holdReceivers(t *testing.T) map[string]newReceiver {
	t.Helper()
	rx := map[string]newReceiver{
		"goroutines": func(m *holdMeters, p *rtpPorts) (holdReceiver, error) { return newGoroutineReceiver(m, p), nil },
	}
	for _, kind := range []string{rxSockets, rxRing} {
		r, got, err := newHoldReceiver(&holdMeters{win: newWindow()}, newRTPPorts(netip.MustParseAddr("127.0.0.1"), 47000, 47999), kind)
		if err != nil {
			if kind == rxRing && !interop.Required() {
				t.Logf("no packet ring here (%v): needs CAP_NET_RAW, as root has", err)
				continue
			}
			t.Fatalf("-rx %s: %v", kind, err)
		}
		require.Equal(t, kind, got)
		r.stop()
		rx[kind] = func(m *holdMeters, p *rtpPorts) (holdReceiver, error) {
			r, _, err := newHoldReceiver(m, p, kind)
			return r, err
		}
	}
	return rx
}

func TestHoldReceivers(t *testing.T) {
	for name, rx := range holdReceivers(t) {
		t.Run(name, func(t *testing.T) { testReceiver(t, rx) })
	}
}

// TestHoldReceiverDrainsABacklog: datagrams that wait on a socket before
// the receiver reads it (more than one read takes) are all counted, and a
// datagram arriving later is still reported.
func TestHoldReceiverDrainsABacklog(t *testing.T) {
	for name, rx := range holdReceivers(t) {
		t.Run(name, func(t *testing.T) {
			m := &holdMeters{win: newWindow()}
			r, err := rx(m, newRTPPorts(netip.MustParseAddr("127.0.0.1"), 47000, 47999))
			require.NoError(t, err)
			defer r.stop()
			s, err := r.open()
			require.NoError(t, err)
			s.ackAt.Store(time.Now().UnixNano())
			now := time.Now()
			m.win.end.Store(now.Add(time.Hour).UnixNano())
			m.win.start.Store(now.UnixNano())

			send := rtpSender(t)
			send(local(s.port), 0, 11)
			r.start()
			time.Sleep(50 * time.Millisecond)
			send(local(s.port), 11, 12)
			time.Sleep(50 * time.Millisecond)
			r.stop()
			require.Equal(t, uint64(12), s.stats.inWindow)
			require.Zero(t, s.stats.seqLost)
		})
	}
}

func TestRTPPortsSkipsPortsInUse(t *testing.T) {
	ip := netip.MustParseAddr("127.0.0.1")
	busy, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 47500)))
	if err != nil {
		t.Skip("port 47500 taken:", err)
	}
	defer busy.Close()
	p := newRTPPorts(ip, 47499, 47503) // even: 47500, 47502
	c, err := p.listen()
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, uint16(47502), localPort(c))
	_, err = p.listen()
	require.Error(t, err, "every even port is taken")
}

func TestSDPOffer(t *testing.T) {
	sdp := string(sdpOffer(netip.MustParseAddr("127.0.0.1"), 40002, 42))
	require.Contains(t, sdp, "c=IN IP4 127.0.0.1\r\n")
	require.Contains(t, sdp, "m=audio 40002 RTP/AVP 0 101\r\n")
	require.Contains(t, sdp, "o=parkload 42 42 IN IP4 127.0.0.1\r\n")
	require.Contains(t, string(sdpOffer(netip.MustParseAddr("::1"), 40002, 1)), "c=IN IP6 ::1\r\n")
}
