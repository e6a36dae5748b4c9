package sipadapter_test

import (
	"net"
	"testing"
	"time"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// Over TCP, every request the server starts (the parker's MESSAGE, the
// recall INVITE) must go to its target, whatever other phones are connected:
// sipgo files each accepted TCP connection under the listener's own address
// too, so a request pinned to that address would ride the connection
// accepted last, to somebody else.
func TestTCPRequestsReachTheirTarget(t *testing.T) {
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: "tcp"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol", Transport: "tcp"})
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: "tcp"})
	ctx := ctxFor(t, 20*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.NoError(t, err)
	msgs, err := bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+parked.Orbit(), msgs[0].Body)

	// carol's connection is now the one accepted last.
	res, err := carol.Send(ctx, sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: srv.Addr().Addr().String(), Port: int(srv.Addr().Port()), UriParams: tcpParam()}))
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)

	var outcome park.Outcome
	ended := make(chan struct{})
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
		if e.Kind == park.EventEnded {
			outcome = e.Outcome
			close(ended)
		}
	}))
	require.NoError(t, shutdownAnswering(t, ctx, srv, bob, nil), "the recall rings bob")
	<-ended
	require.Equal(t, park.Recalled, outcome)
	require.Equal(t, 1, bob.Inbox().Invites(), "the recall rang the parker")
	require.Zero(t, carol.Inbox().Invites(), "and nobody else")
	require.Empty(t, carol.Inbox().Messages())
}

func tcpParam() sip.HeaderParams {
	p := sip.NewParams()
	p.Add("transport", "tcp")
	return p
}

// Over UDP, an in-dialog request (sipgo's dialogs build those without the
// connection address) to a Contact the server never heard from must still
// leave from the server's port, the one the peer knows, not from a new
// socket bound on every interface.
func TestUDPInDialogRequestLeavesFromTheListener(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	// The party sends from one socket and gives another as its Contact.
	party := newRawUDPParty(t, srv.Addr(), true)
	rtpPort := listenLoopbackUDP(t).LocalAddr().(*net.UDPAddr).Port
	res := party.invite(srv.ParkURI(), sdpOffer(rtpPort, 1, "sendrecv"))
	require.Equal(t, 200, res.StatusCode)
	party.ack(res, "")

	// carol retrieves and hangs up: the server re-INVITEs the party (it
	// leaves hold), then passes the BYE on; serveUntilBye checks that each
	// comes from the server's own port.
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	talk, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(res.GetHeader("X-Park-Orbit").Value())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, talk.Hangup(ctx))
	party.serveUntilBye(sdpOffer(rtpPort, 2, "sendrecv"))
	waitUntil(t, 5*time.Second, "legs are freed", func() bool { return srv.OpenLegs() == 0 })
}
