package sipadapter

import (
	"net/netip"
	"testing"

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
