package sipadapter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

func orbitTable(t *testing.T, spec string) *orbit.Table {
	t.Helper()
	table, err := orbit.ParseTable(spec)
	require.NoError(t, err)
	return table
}

// A reload under parked calls and BLF watchers: the calls stay (one in a
// range the reload removed, still retrievable), the watchers keep hearing,
// new parks and new SUBSCRIBEs follow the new ranges and timer.
func TestReconfigureUnderParkedCallsAndWatchers(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Orbits: orbitTable(t, "701-709")})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 30*time.Second)

	watch, err := bob.Subscribe(ctx, srv.OrbitURI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	nextDialogInfo(t, ctx, watch) // the initial, empty state
	first, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "701", first.Orbit())
	require.NotEmpty(t, nextDialogInfo(t, ctx, watch).Dialogs, "lit")

	require.Error(t, srv.Reconfigure(park.Config{PickupTimeout: time.Second}, nil), "refused: below Lync's 10 s")
	require.Error(t, srv.Reconfigure(park.Config{}, orbitTable(t, "690-710")), "refused: holds the park extension")
	require.Equal(t, park.DefaultPickupTimeout, srv.Lot().Config().PickupTimeout, "a refused reload changes nothing")

	require.NoError(t, srv.Reconfigure(park.Config{PickupTimeout: 20 * time.Second}, orbitTable(t, "801-809")))
	require.Equal(t, 20*time.Second, srv.Lot().Config().PickupTimeout)
	second, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "801", second.Orbit(), "new parks go to the new range")
	info, ok := srv.Lot().Lookup("801")
	require.True(t, ok)
	require.Equal(t, 20*time.Second, info.RecallAt.Sub(info.Since))

	watch801, err := bob.Subscribe(ctx, srv.OrbitURI("801"), "dialog", time.Hour)
	require.NoError(t, err, "a key on a new orbit is served")
	require.NotEmpty(t, nextDialogInfo(t, ctx, watch801).Dialogs)
	_, err = bob.Subscribe(ctx, srv.OrbitURI("702"), "dialog", time.Hour)
	require.Error(t, err, "an orbit of the removed range that holds nothing is no orbit now")

	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "the call in the removed range is retrieved")
	gone := nextDialogInfo(t, ctx, watch).Dialogs
	require.Len(t, gone, 1)
	require.Equal(t, "terminated", gone[0].State, "and its watcher sees it go")
	require.NoError(t, talk.Hangup(ctx))
	<-first.Done()
	_, err = bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{Mute: true})
	require.Error(t, err, "its orbit is gone now")
}
