package sipadapter

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
)

// legMedia.Answer is the one place the server and the example PBX turn a
// new INVITE's body into a leg's media, or into a refusal: each case with
// its status, and nothing held after a refusal.
func TestLegMediaAnswer(t *testing.T) {
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), 10250, 10253) // two ports
	require.NoError(t, err)
	sched := media.NewScheduler(media.SchedulerOptions{})
	t.Cleanup(func() { sched.Close() })
	lm := legMedia{Ports: pool, IP: netip.MustParseAddr("127.0.0.1"), Username: "test", Scheduler: sched, LateOfferSwitch: "-late-offer"}
	invite := func(body string) *sip.Request {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "700", Host: "127.0.0.1"})
		if body != "" {
			req.SetBody([]byte(body))
		}
		return req
	}
	g711 := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"

	for _, tt := range []struct {
		name, body string
		code       int
		warning    string
	}{
		{name: "delayed offer, off", code: 488, warning: "no SDP offer: delayed offer is off (-late-offer)"},
		{name: "not SDP", body: "hello", code: 400},
		{name: "no G.711", body: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n", code: 488},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := lm.Answer(invite(tt.body), true, false)
			var refusal *mediaRefusal
			require.ErrorAs(t, err, &refusal, "every refusal is an error")
			require.Equal(t, tt.code, refusal.Code)
			require.False(t, refusal.Overload)
			if tt.warning != "" {
				require.Contains(t, refusal.Headers[0].Value(), tt.warning)
			}
			require.Zero(t, pool.InUse(), "a refusal holds no port")
		})
	}

	// A parked leg answers one-way; another leg two-way.
	parked, body, err := lm.Answer(invite(g711), true, false)
	require.NoError(t, err)
	require.Contains(t, string(body), "a=sendonly")
	require.Equal(t, media.SendOnly, parked.Direction)
	require.Equal(t, media.PCMA, parked.Endpoint.Codec())
	require.Nil(t, parked.LateOffer)

	// Delayed offer, on: the body is our offer, kept for the ACK's answer.
	lm.AcceptLateOffer = true
	late, body, err := lm.Answer(invite(""), false, false)
	require.NoError(t, err)
	require.NotNil(t, late.LateOffer)
	require.Contains(t, string(body), "a=sendrecv")
	require.Contains(t, string(body), "RTP/AVP 0 8")

	// The pool is empty now: 503, louder in the log.
	_, _, err = lm.Answer(invite(g711), false, false)
	var refusal *mediaRefusal
	require.ErrorAs(t, err, &refusal)
	require.ErrorIs(t, err, ErrNoRTPPort)
	require.Equal(t, 503, refusal.Code)
	require.True(t, refusal.Overload)

	pool.freeEndpoint(parked.Endpoint)
	pool.freeEndpoint(late.Endpoint)
	require.Zero(t, pool.InUse())
}

// A parked leg on the shared port takes no port of its own, answers with
// the shared one, and latches to RTP from the host its INVITE came from
// when its SDP names an address the server cannot reach (a phone behind
// NAT).
func TestLegMediaAnswerShared(t *testing.T) {
	pool, err := NewPortPool(netip.MustParseAddr("127.0.0.1"), 10260, 10263)
	require.NoError(t, err)
	sched := media.NewScheduler(media.SchedulerOptions{})
	t.Cleanup(func() { sched.Close() })
	shared, err := newSharedPort(pool, sched, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { shared.Close() })
	lm := legMedia{Ports: pool, IP: netip.MustParseAddr("127.0.0.1"), Username: "test", Scheduler: sched, Shared: shared}

	phone, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { phone.Close() })
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "700", Host: "127.0.0.1"})
	req.SetSource("127.0.0.1:5062") // the NAT's public address
	req.SetBody([]byte("v=0\r\no=- 1 1 IN IP4 10.1.2.3\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"))

	parked, body, err := lm.Answer(req, true, false)
	require.NoError(t, err)
	require.Contains(t, string(body), "m=audio 10260 ")
	require.Same(t, shared, parked.Endpoint.SharedPort())
	require.Zero(t, pool.InUse())

	pkt := make([]byte, 12+160)
	pkt[0] = 0x80
	_, err = phone.WriteToUDPAddrPort(pkt, shared.LocalAddr())
	require.NoError(t, err)
	want := phone.LocalAddr().(*net.UDPAddr).AddrPort()
	deadline := time.Now().Add(5 * time.Second)
	for parked.Endpoint.Remote() != want {
		require.True(t, time.Now().Before(deadline), "the leg did not latch to the NAT's address")
		time.Sleep(time.Millisecond)
	}

	// A retriever's leg has its own port.
	other, _, err := lm.Answer(req, false, false)
	require.NoError(t, err)
	require.Nil(t, other.Endpoint.SharedPort())
	require.Equal(t, 1, pool.InUse())
	pool.freeEndpoint(other.Endpoint)
	pool.freeEndpoint(parked.Endpoint)
	require.Zero(t, pool.InUse())
}
