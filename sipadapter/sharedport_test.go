package sipadapter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// With Config.SharedRTPPort every parked call is answered with the same RTP
// port, the first of the range; each parked party hears its own music, a
// hold and resume keep the port (a newer SDP version each time), and the
// retrieved call talks both ways through it. Retrievers keep ports of their
// own, and the shared port goes back to the pool at Shutdown.
func TestSharedRTPPort(t *testing.T) {
	const lo, hi = 11100, 11109 // five even ports
	srv := testServer(t, sipadapter.Config{SharedRTPPort: true, RTPPortMin: lo, RTPPortMax: hi})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Codecs: []media.Codec{media.PCMA}})
	require.Equal(t, 4, srv.PortsFree(), "the shared port is out of the pool")

	a, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	c, err := carol.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	shared := a.RemoteSDP().Addr
	require.Equal(t, uint16(lo), shared.Port(), "the first port of the range")
	require.Equal(t, shared, c.RemoteSDP().Addr, "both parked calls on one port")
	require.Zero(t, srv.PortsInUse(), "parked legs take no port of their own")
	require.NoError(t, a.WaitReceived(ctx, 10))
	require.NoError(t, c.WaitReceived(ctx, 10))
	require.Zero(t, a.RTPStats().UnknownPayloadType)

	v := a.RemoteSDP().SessionVersion
	require.NoError(t, a.Hold(ctx))
	require.NoError(t, a.Resume(ctx))
	require.Equal(t, shared, a.RemoteSDP().Addr, "a re-INVITE keeps the shared port")
	require.Greater(t, a.RemoteSDP().SessionVersion, v)

	talk, err := bob.Call(ctx, srv.OrbitURI(orbit.Orbit(a.Orbit())), parktest.CallOptions{})
	require.NoError(t, err)
	require.NotEqual(t, shared, talk.RemoteSDP().Addr, "a retriever has a port of its own")
	require.Equal(t, 1, srv.PortsInUse())
	before := a.Received()
	require.NoError(t, talk.WaitReceived(ctx, 25), "alice -> bob, read on the shared port")
	require.NoError(t, a.WaitReceived(ctx, before+25), "bob -> alice, sent from the shared port")
	require.Equal(t, shared, a.RemoteSDP().Addr, "the bridged leg keeps the shared port")

	st, ok := srv.SharedRTPStats()
	require.True(t, ok)
	require.Equal(t, 2, st.Legs)
	require.Positive(t, st.Received)
	require.Zero(t, st.Unknown+st.Ambiguous+st.Stale, "every packet was its leg's")
	require.Positive(t, srv.RTPStats().Packets, "the music scheduler's counters")

	require.NoError(t, talk.Hangup(ctx))
	<-a.Done()
	require.NoError(t, c.Hangup(ctx))
	waitUntil(t, 5*time.Second, "legs are freed", func() bool { return srv.OpenLegs() == 0 })
	st, _ = srv.SharedRTPStats()
	require.Zero(t, st.Legs)
	require.NoError(t, srv.Shutdown(ctx))
	require.Equal(t, 5, srv.PortsFree(), "every port is free again, the shared one included")
}
