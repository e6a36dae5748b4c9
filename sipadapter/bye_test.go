package sipadapter_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// Issue 16, point 4: the parked party hears its BYE within 2 s of the
// retriever's, even when its answer to the bridge's re-INVITE (two-way
// audio back, RFC 3264 §8) never comes, as under overload when a packet is
// lost. The BYE used to wait for that re-INVITE, up to its 10 s limit.
func TestByeDoesNotWaitForAnUnansweredReInvite(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", IgnoreReInvites: true})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	time.Sleep(200 * time.Millisecond) // the re-INVITE to alice is out, unanswered

	hungUp := time.Now()
	require.NoError(t, got.Hangup(ctx))
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote())
		require.Less(t, time.Since(hungUp), 2*time.Second, "alice's BYE waited for the re-INVITE")
	case <-ctx.Done():
		t.Fatal("alice never got her BYE")
	}
}
