package sipadapter_test

import (
	"sync"
	"testing"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
	"github.com/stretchr/testify/require"
)

// Delayed offer (RFC 3261 §13.2.1), as CUCM trunks send by default: an
// INVITE without SDP gets the server's offer in the 200, and the ACK
// answers it. Parking and retrieving both work that way, with music and
// two-way audio.
func TestLateOfferParkAndRetrieve(t *testing.T) {
	srv := testServer(t, sipadapter.Config{AcceptLateOffer: true})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Codecs: []media.Codec{media.PCMA}})
	ctx := ctxFor(t, 20*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{LateOffer: true})
	require.NoError(t, err)
	require.Equal(t, "701", parked.Orbit())
	require.Equal(t, media.SendOnly, parked.RemoteSDP().Direction, "the server offers one-way: it plays music")
	require.NoError(t, parked.WaitReceived(ctx, 10), "music flows once the ACK answered the offer")

	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{LateOffer: true})
	require.NoError(t, err)
	require.Equal(t, media.SendRecv, talk.RemoteSDP().Direction)
	before := parked.Received()
	require.NoError(t, talk.WaitReceived(ctx, 25), "bob (PCMA) hears alice (PCMU)")
	require.NoError(t, parked.WaitReceived(ctx, before+25), "and alice hears bob")
	require.NoError(t, talk.Hangup(ctx))
	waitEnd(t, ctx, parked, "alice gets bob's BYE")
}

// An ACK that does not answer the offer (no body, or no codec in common)
// leaves no media path: the server ends the parked call with a BYE, once,
// and the orbit is free.
func TestLateOfferBadAckAnswerEndsTheCall(t *testing.T) {
	for _, tt := range []struct{ name, answer string }{
		{name: "no SDP in the ACK"},
		{name: "no common codec", answer: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{AcceptLateOffer: true})
			var mu sync.Mutex
			var outcomes []park.Outcome
			srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
				if e.Kind == park.EventEnded {
					mu.Lock()
					outcomes = append(outcomes, e.Outcome)
					mu.Unlock()
				}
			}))
			party := newRawUDPParty(t, srv.Addr(), false)
			res := party.invite(srv.ParkURI(), "")
			require.Equal(t, 200, res.StatusCode)
			require.Contains(t, string(res.Body()), "m=audio", "the 200 carries the server's offer")
			require.NotEmpty(t, res.GetHeader("X-Park-Orbit").Value())
			party.ack(res, tt.answer)
			party.serveUntilBye("")
			waitUntil(t, 5*time.Second, "the leg is freed", func() bool { return srv.OpenLegs() == 0 && srv.Lot().Len() == 0 })
			mu.Lock()
			require.Equal(t, []park.Outcome{park.Abandoned}, outcomes, "one outcome")
			mu.Unlock()
		})
	}
}

// A retrieve by delayed offer whose ACK does not answer cannot carry the
// call: both sides are hung up (the lot had handed the call over), and the
// parked party is not left in silence.
func TestLateOfferRetrieveWithBadAck(t *testing.T) {
	srv := testServer(t, sipadapter.Config{AcceptLateOffer: true})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	party := newRawUDPParty(t, srv.Addr(), false)
	res := party.invite(srv.OrbitURI(orbit.Orbit(parked.Orbit())), "")
	require.Equal(t, 200, res.StatusCode)
	party.ack(res, "")
	party.serveUntilBye("")
	waitEnd(t, ctx, parked, "the parked party gets a BYE")
	waitUntil(t, 5*time.Second, "legs are freed", func() bool { return srv.OpenLegs() == 0 })
}

// Off (the default), an INVITE without SDP gets 488 with a Warning that
// names the setting, and parks nothing.
func TestLateOfferOffByDefault(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 10*time.Second)
	_, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{LateOffer: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 488, se.Code)
	require.Contains(t, se.Response.GetHeader("Warning").Value(), "AcceptLateOffer")
	require.Zero(t, srv.Lot().Len())
}
