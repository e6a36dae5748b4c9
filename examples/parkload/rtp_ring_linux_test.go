package main

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestRingFilterKeepsOnlyTheCallsDatagrams: the ring's filter lets in UDP
// to -local on -rtp-ports, and nothing sent to another port or address.
func TestRingFilterKeepsOnlyTheCallsDatagrams(t *testing.T) {
	rx, ok := holdReceivers(t)[rxRing]
	if !ok {
		t.Skip("no packet ring here: needs CAP_NET_RAW")
	}
	m := &holdMeters{win: newWindow()}
	r, err := rx(m, newRTPPorts(netip.MustParseAddr("127.0.0.1"), 47000, 47009))
	require.NoError(t, err)
	defer r.stop()
	ring := r.(*ringReceiver)

	send, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer send.Close()
	// Each destination is bound, so no ICMP answers anything.
	to := func(addr string) netip.AddrPort {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return netip.MustParseAddrPort(addr)
	}
	in := to("127.0.0.1:47002")
	for _, dst := range []netip.AddrPort{in, to("127.0.0.1:47010"), to("127.0.0.1:46998"), to("127.0.0.2:47004")} {
		for seq := range uint16(5) {
			_, err := send.WriteToUDPAddrPort(rtpPacket(seq), dst)
			require.NoError(t, err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	st, err := unix.GetsockoptTpacketStatsV3(ring.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	require.NoError(t, err)
	require.Equal(t, uint32(5), st.Packets, "only the datagrams to 127.0.0.1:47000-47009 reach the ring")
	require.Zero(t, st.Drops)
}
