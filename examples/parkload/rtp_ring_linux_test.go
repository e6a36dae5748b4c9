package main

import (
	"net"
	"net/netip"
	"strings"
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

	send := rtpSender(t)
	// Each destination is bound, so no ICMP answers anything.
	to := func(addr string) netip.AddrPort {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		return netip.MustParseAddrPort(addr)
	}
	in := to("127.0.0.1:47002")
	for _, dst := range []netip.AddrPort{in, to("127.0.0.1:47010"), to("127.0.0.1:46998"), to("127.0.0.2:47004")} {
		send(dst, 0, 5)
	}
	time.Sleep(20 * time.Millisecond)
	st, err := unix.GetsockoptTpacketStatsV3(ring.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	require.NoError(t, err)
	require.Equal(t, uint32(5), st.Packets, "only the datagrams to 127.0.0.1:47000-47009 reach the ring")
	require.Zero(t, st.Drops)
}

// TestRingOverrunsAreTheTools: datagrams a full ring cannot take are
// counted as the tool's own drops, and the report says whose they are.
func TestRingOverrunsAreTheTools(t *testing.T) {
	if _, ok := holdReceivers(t)[rxRing]; !ok {
		t.Skip("no packet ring here: needs CAP_NET_RAW")
	}
	m := &holdMeters{win: newWindow()}
	r, err := newRingReceiverBlocks(m, newRTPPorts(netip.MustParseAddr("127.0.0.1"), 47000, 47009), 1)
	require.NoError(t, err)
	defer r.stop()
	s, err := r.open()
	require.NoError(t, err)

	// Not started: nothing gives the one block back, and a block holds
	// about 8,000 datagrams cut to 48 bytes.
	rtpSender(t)(local(s.port), 0, 12000)
	time.Sleep(20 * time.Millisecond)
	drops := r.overruns()
	require.Greater(t, drops, uint64(1000))
	require.Equal(t, drops, r.overruns(), "the count is kept, not reset by reading")

	var out strings.Builder
	(&report{Mode: "hold", RTP: rtpReport{Receiver: rxRing, ToolDropped: drops}}).writeText(&out)
	require.Contains(t, out.String(), "dropped by the tool's own receiver")
}
