package wirecap

import (
	"crypto/rand"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
)

func tone(hz float64, n int) []int16 {
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/8000))
	}
	return pcm
}

// The check the interop tests lean on: G.711 of a tone in the clear has
// nearly all its energy at the tone, ciphertext decoded as G.711 next to
// none.
func TestToneShareTellsG711OfAToneFromCiphertext(t *testing.T) {
	for _, codec := range []media.Codec{media.PCMU, media.PCMA} {
		for _, hz := range []float64{440, 1000} {
			payload := make([]byte, 160)
			codec.Encode(payload, tone(hz, 160))
			share := ToneShare(DecodeG711(codec.PayloadType(), payload), hz)
			require.InDelta(t, 1, share, 0.1, "%v of %v Hz", codec, hz)
			require.Less(t, ToneShare(DecodeG711(codec.PayloadType(), payload), 3000-hz), 0.05, "another frequency")
		}
	}
	for range 100 {
		random := make([]byte, 160)
		_, _ = rand.Read(random)
		require.Less(t, ToneShare(DecodeG711(0, random), 1000), 0.2)
	}
	require.Zero(t, ToneShare(make([]float64, 160), 1000), "silence")
}

func TestParseRTP(t *testing.T) {
	pkt := []byte{0x80, 0x08, 0x01, 0x02, 0, 0, 0x03, 0x20, 0xde, 0xad, 0xbe, 0xef, 0xd5, 0xd5}
	p, ok := ParseRTP(pkt)
	require.True(t, ok)
	require.Equal(t, RTP{PayloadType: 8, Seq: 0x0102, Timestamp: 800, SSRC: 0xdeadbeef, Rest: []byte{0xd5, 0xd5}}, p)
	// One CSRC and a one-word extension are skipped.
	pkt = []byte{0x91, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9, 9, 9, 0xbe, 0xde, 0, 1, 7, 7, 7, 7, 0xff}
	p, ok = ParseRTP(pkt)
	require.True(t, ok)
	require.Equal(t, []byte{0xff}, p.Rest)
	for _, bad := range [][]byte{
		{0x80, 0x00},                                              // short
		{0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},                   // version 1
		{0x80, 0xc8, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0},                // RTCP sender report
		{0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9}, // extension past the end
	} {
		_, ok := ParseRTP(bad)
		require.False(t, ok, "% x", bad)
	}
}

// The capture sees a datagram sent on loopback, with its addresses, and
// keeps only what the filter takes (this machine's other UDP traffic, the
// other tests' included, goes by it too).
func TestCaptureSeesLoopbackUDP(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer rx.Close()
	port := rx.LocalAddr().(*net.UDPAddr).Port
	c := Start(t, ToPorts(port, port))
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer tx.Close()
	other, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port + 1})
	require.NoError(t, err)
	defer other.Close()

	// Sent again until seen: the raw socket may start a moment after.
	deadline := time.Now().Add(10 * time.Second)
	for c.Len() == 0 && time.Now().Before(deadline) {
		_, _ = other.Write([]byte("not this"))
		_, err = tx.Write([]byte("hello"))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
	}
	got := c.Wait(t, 0, 1, nil, time.Second)
	require.Equal(t, "hello", string(got[0].Payload))
	require.Equal(t, netip.MustParseAddrPort(tx.LocalAddr().String()), got[0].Src)
	require.Equal(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), got[0].Dst)
	for _, d := range c.Datagrams() {
		require.Equal(t, "hello", string(d.Payload), "only the filter's port")
	}
}
