package media

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// verifyNoLeaks checks, after every cleanup of the test, that the test left
// no goroutine behind (goroutines that existed before it are ignored).
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	// Registered first, so it runs after the test's other cleanups.
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func listenLoopback(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// phone is a test peer: an RTP socket that sends and receives.
type phone struct {
	t    *testing.T
	conn *net.UDPConn
	ssrc uint32
	seq  uint16
	ts   uint32
}

func newPhone(t *testing.T) *phone {
	return &phone{t: t, conn: listenLoopback(t), ssrc: 0x0badcafe, seq: 100, ts: 16000}
}

func (p *phone) addr() netip.AddrPort { return addrOf(p.conn) }

// packet builds the phone's next packet (sequence +1, timestamp +160).
func (p *phone) packet(pt uint8, marker bool, payload []byte) []byte {
	b := rtpBytes(p.t, rtp.Packet{Header: rtp.Header{
		Version: 2, PayloadType: pt, Marker: marker,
		SequenceNumber: p.seq, Timestamp: p.ts, SSRC: p.ssrc,
	}, Payload: payload})
	p.seq++
	p.ts += SamplesPerFrame
	return b
}

func (p *phone) sendTo(to netip.AddrPort, b []byte) {
	p.t.Helper()
	_, err := p.conn.WriteToUDPAddrPort(b, to)
	require.NoError(p.t, err)
}

// read returns the next RTP packet the phone receives (5 s at most).
func (p *phone) read() rtp.Packet {
	p.t.Helper()
	buf := make([]byte, 1500)
	require.NoError(p.t, p.conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := p.conn.Read(buf)
	require.NoError(p.t, err)
	var pkt rtp.Packet
	require.NoError(p.t, pkt.Unmarshal(buf[:n]))
	return pkt
}

// readN returns the next n packets.
func (p *phone) readN(n int) []rtp.Packet {
	p.t.Helper()
	pkts := make([]rtp.Packet, n)
	for i := range pkts {
		pkts[i] = p.read()
	}
	return pkts
}

// newTestScheduler returns a scheduler for the endpoint and relay tests,
// which never skips a late frame.
// CALLPARK_MEDIA_PORTABLE_IO=1 runs them on the portable read path (Go's
// netpoller) where the platform has another.
func newTestScheduler(t *testing.T) *Scheduler {
	s := NewScheduler(SchedulerOptions{})
	s.portableIO = os.Getenv("CALLPARK_MEDIA_PORTABLE_IO") != ""
	// A frame more than 100 ms late would be skipped: on a busy machine
	// a test that checks each frame sent would see a gap. Sent late, it
	// is still checked.
	s.catchUp = time.Minute
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newTestEndpoint(t *testing.T, opts EndpointOptions) *Endpoint {
	t.Helper()
	e, err := NewEndpoint(listenLoopback(t), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestEndpointPlaysMusicToPeer(t *testing.T) {
	tests := []struct {
		codec  Codec
		pt     uint8
		wantPT uint8
	}{
		{PCMU, 0, 0},
		{PCMA, 0, 8},
		{PCMA, 8, 8},
		{PCMU, 96, 96}, // a dynamic number from the peer's rtpmap
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/%d", tt.codec, tt.wantPT), func(t *testing.T) {
			verifyNoLeaks(t)
			s := newTestScheduler(t)
			peer := newPhone(t)
			e := newTestEndpoint(t, EndpointOptions{Remote: peer.addr(), Codec: tt.codec, PayloadType: tt.pt, Scheduler: s})
			frames := testFrames(tt.codec, 3)
			require.NoError(t, e.PlayMusic(frames))

			pkts := peer.readN(5)
			for i, p := range pkts {
				require.Equal(t, tt.wantPT, p.PayloadType)
				require.Equal(t, e.SSRC(), p.SSRC)
				require.Equal(t, i == 0, p.Marker)
				require.Equal(t, pkts[0].SequenceNumber+uint16(i), p.SequenceNumber)
				require.Equal(t, pkts[0].Timestamp+uint32(i)*SamplesPerFrame, p.Timestamp)
				require.Equal(t, frames.Payload(i), p.Payload)
			}
			e.StopMusic()
			e.StopMusic()
			require.GreaterOrEqual(t, e.Stats().Sent, uint64(5))
		})
	}
}

func TestEndpointSymmetricRTP(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	sdpPeer := newPhone(t) // where the SDP said; the phone is behind a NAT
	stranger := newPhone(t)
	probe := newPhone(t)
	e := newTestEndpoint(t, EndpointOptions{Remote: sdpPeer.addr(), Codec: PCMU, TelephoneEvent: 101, Scheduler: s})
	require.NoError(t, e.PlayMusic(testFrames(PCMU, 1)))
	require.Equal(t, e.SSRC(), sdpPeer.read().SSRC, "music goes to the SDP address first")

	// None of these may move the destination.
	ignored := []struct {
		name string
		pkt  []byte
	}{
		{"junk", []byte("hello, is this RTP?")},
		{"STUN binding request", append([]byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...)},
		{"RTCP receiver report", append([]byte{0x81, 201, 0x00, 0x07}, make([]byte, 28)...)},
		{"RTP version 1", append([]byte{0x40, 0x00}, make([]byte, 170)...)},
		{"RTP with a payload type not negotiated", stranger.packet(18, false, make([]byte, 20))},
	}
	for _, in := range ignored {
		stranger.sendTo(e.LocalAddr(), in.pkt)
	}
	// A valid packet from the probe moves the music there. The endpoint
	// reads in order, so once the probe hears music the stranger's packets
	// have all been handled.
	probe.sendTo(e.LocalAddr(), probe.packet(0, true, make([]byte, SamplesPerFrame)))
	got := probe.read()
	require.Equal(t, e.SSRC(), got.SSRC)
	require.Equal(t, probe.addr(), e.Remote())

	stats := e.Stats()
	require.Equal(t, uint64(4), stats.NotRTP)
	require.Equal(t, uint64(1), stats.UnknownPayloadType)
	require.Equal(t, uint64(1), stats.Received)
	require.Equal(t, uint64(1), stats.RemoteChanges)

	// A telephone-event packet is valid RTP of this leg too.
	stranger.sendTo(e.LocalAddr(), stranger.packet(101, true, []byte{1, 0x0a, 0, 160}))
	require.Equal(t, e.SSRC(), stranger.read().SSRC)
	require.Equal(t, stranger.addr(), e.Remote())
}

func TestEndpointHoldUnhold(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	peer := newPhone(t)
	e := newTestEndpoint(t, EndpointOptions{Remote: peer.addr(), Codec: PCMA, Scheduler: s})

	// Held before the music starts: it starts paused.
	e.Hold()
	require.NoError(t, e.PlayMusic(testFrames(PCMA, 2)))
	e.Unhold()
	first := peer.readN(3)
	require.True(t, first[0].Marker)

	e.Hold()
	// Every packet sent before Hold returned is in the peer's queue.
	sent := e.Stats().Sent
	last := first[2]
	for range sent - 3 {
		last = peer.read()
	}
	e.Unhold()
	e.Unhold()
	resumed := peer.readN(2)
	require.True(t, resumed[0].Marker, "marker after the hold")
	require.False(t, resumed[1].Marker)
	require.Equal(t, last.SequenceNumber+1, resumed[0].SequenceNumber, "no sequence gap over a hold")
	step := resumed[0].Timestamp - last.Timestamp
	require.Zero(t, step%SamplesPerFrame)
	require.GreaterOrEqual(t, step, uint32(SamplesPerFrame))
	require.Equal(t, last.SSRC, resumed[0].SSRC)
}

func TestEndpointSetRemoteAndSetCodec(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	before, after := newPhone(t), newPhone(t)
	e := newTestEndpoint(t, EndpointOptions{Remote: before.addr(), Codec: PCMU, Scheduler: s})
	ulaw := testFrames(PCMU, 1)
	require.NoError(t, e.PlayMusic(ulaw))
	last := before.read()

	// A re-INVITE moves the peer and switches it to PCMA at a dynamic type.
	e.SetRemote(after.addr())
	require.NoError(t, e.SetCodec(PCMA, 97, 101))
	require.Equal(t, after.addr(), e.Remote())
	require.Equal(t, PCMA, e.Codec())
	var got rtp.Packet
	for got = after.read(); got.PayloadType != 97; got = after.read() {
		// Packets sent between SetRemote and SetCodec are still PCMU.
		require.Equal(t, uint8(0), got.PayloadType)
	}
	want := bytes.Clone(ulaw.Payload(0))
	Transcode(want, PCMU, PCMA)
	require.Equal(t, want, got.Payload, "the PCMU music is transcoded for the PCMA leg")
	require.Equal(t, last.SSRC, got.SSRC)
	require.False(t, got.Marker)

	// Matching frames replace the transcoded ones without a restart.
	alaw := NewFrames(PCMA, constantFrame(-5000))
	require.NoError(t, e.PlayMusic(alaw))
	for got = after.read(); !bytes.Equal(got.Payload, alaw.Payload(0)); got = after.read() {
		require.Equal(t, want, got.Payload)
	}
	require.False(t, got.Marker)
	require.Equal(t, last.SSRC, got.SSRC)

	require.ErrorIs(t, e.SetCodec(Codec(3), 0, 0), ErrInvalidArgument)
}

func TestNewEndpointRejectsBadOptions(t *testing.T) {
	s := newTestScheduler(t)
	tests := []struct {
		name string
		opts EndpointOptions
		nil  bool // nil conn
		want string
	}{
		{name: "nil conn", opts: EndpointOptions{Codec: PCMU, Scheduler: s}, nil: true, want: "conn"},
		{name: "no scheduler", opts: EndpointOptions{Codec: PCMU}, want: "Scheduler"},
		{name: "codec", opts: EndpointOptions{Codec: Codec(9), Scheduler: s}, want: "Codec"},
		{name: "PCMA's type for PCMU", opts: EndpointOptions{Codec: PCMU, PayloadType: 8, Scheduler: s}, want: "PayloadType 8"},
		{name: "payload type above 127", opts: EndpointOptions{Codec: PCMU, PayloadType: 200, Scheduler: s}, want: "PayloadType 200"},
		{name: "payload type in the RTCP range", opts: EndpointOptions{Codec: PCMA, PayloadType: 72, Scheduler: s}, want: "PayloadType 72"},
		{name: "telephone-event on the audio type", opts: EndpointOptions{Codec: PCMA, TelephoneEvent: 8, Scheduler: s}, want: "TelephoneEvent 8"},
		{name: "telephone-event in the RTCP range", opts: EndpointOptions{Codec: PCMU, TelephoneEvent: 76, Scheduler: s}, want: "TelephoneEvent 76"},
		{name: "telephone-event above 127", opts: EndpointOptions{Codec: PCMU, TelephoneEvent: 128, Scheduler: s}, want: "TelephoneEvent 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conn *net.UDPConn
			if !tt.nil {
				conn = listenLoopback(t)
			}
			e, err := NewEndpoint(conn, tt.opts)
			require.Nil(t, e)
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestEndpointClose(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	peer := newPhone(t)
	conn := listenLoopback(t)
	e, err := NewEndpoint(conn, EndpointOptions{Remote: peer.addr(), Codec: PCMU, Scheduler: s})
	require.NoError(t, err)
	require.NoError(t, e.PlayMusic(testFrames(PCMU, 1)))
	peer.read()

	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "Close is idempotent")
	require.Zero(t, s.Stats().Streams, "the music stopped")
	require.ErrorIs(t, e.PlayMusic(testFrames(PCMU, 1)), ErrClosed)
	require.ErrorIs(t, e.SetCodec(PCMA, 0, 0), ErrClosed)
	_, err = conn.WriteToUDPAddrPort([]byte{1}, peer.addr())
	require.ErrorIs(t, err, net.ErrClosed, "Close closed the socket")
}

func TestEndpointMusicAfterSchedulerClose(t *testing.T) {
	verifyNoLeaks(t)
	s := NewScheduler(SchedulerOptions{})
	require.NoError(t, s.Close())
	e := newTestEndpoint(t, EndpointOptions{Codec: PCMU, Scheduler: s})
	require.ErrorIs(t, e.PlayMusic(testFrames(PCMU, 1)), ErrClosed)
	require.ErrorIs(t, e.PlayMusic(nil), ErrInvalidArgument)
}

// constantFrame returns one frame of a constant sample.
func constantFrame(sample int16) []int16 {
	pcm := make([]int16, SamplesPerFrame)
	for i := range pcm {
		pcm[i] = sample
	}
	return pcm
}

// Announce on a leg without music: the prompts, then silence; with
// music: the prompts, then the music again. done closes after the last
// prompt frame; StopMusic cuts an announcement short and closes it too.
func TestEndpointAnnounce(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	peer := newPhone(t)
	e := newTestEndpoint(t, EndpointOptions{Remote: peer.addr(), Codec: PCMU, Scheduler: s})
	seq, err := Sequence(PCMU, testClip(t, 1000), testClip(t, 2000))
	require.NoError(t, err)
	done, err := e.Announce(seq)
	require.NoError(t, err)
	pkts := peer.readN(seq.Len() + 2)
	for i := range seq.Len() {
		require.Equal(t, seq.Payload(i), pkts[i].Payload, "frame %d", i)
	}
	silence := NewFrames(PCMU, make([]int16, SamplesPerFrame)).Payload(0)
	require.Equal(t, silence, pkts[seq.Len()].Payload, "then silence: no music was set")
	<-done

	music := testFrames(PCMU, 3)
	require.NoError(t, e.PlayMusic(music))
	done, err = e.Announce(seq)
	require.NoError(t, err)
	e.StopMusic()
	<-done // cut short
	_, err = e.Announce(nil)
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.NoError(t, e.Close())
	_, err = e.Announce(seq)
	require.ErrorIs(t, err, ErrClosed)
}

// testClip is one 20 ms frame of a constant sample.
func testClip(t *testing.T, v int16) *Clip {
	t.Helper()
	c, err := NewClip("test", constantFrame(v))
	require.NoError(t, err)
	return c
}
