package redispark

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/park"
)

// Redis restarted empty: the node holding a call claims its orbit back and
// writes its record again; the other node, resubscribed, reads it.
func TestRedisRestartedEmptyLotIsWholeAgain(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv.Addr(), "a", 2*time.Second)
	b := startNode(t, srv.Addr(), "b", 2*time.Second)
	ctx := context.Background()
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &leg{}, Parker: "sip:bob@example.com"})
	require.NoError(t, err)
	o := call.Orbit()
	eventually(t, "b sees the call", func() bool { _, ok := b.lot.Lookup(o); return ok })

	srv.Stop()
	_, err = b.lot.Park(ctx, park.ParkRequest{Leg: &leg{}})
	require.Error(t, err, "no park while Redis is away")
	srv.Restart()
	start := time.Now()

	require.Eventually(t, func() bool {
		_, err := b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o})
		var ee *park.ElsewhereError
		return err != nil && errorAs(err, &ee) && ee.Node == "a"
	}, 10*time.Second, 50*time.Millisecond, "b finds the call on a again")
	require.Eventually(t, func() bool {
		info, ok := b.lot.Lookup(o)
		return ok && info.ParkID == call.ID()
	}, 10*time.Second, 50*time.Millisecond, "b's view has the call again")
	t.Logf("lot whole again %v after Redis came back", time.Since(start).Round(time.Millisecond))
	require.Less(t, time.Since(start), 5*time.Second, "CLUSTER.md 7: within 5 s")
	select {
	case <-call.Done():
		t.Fatalf("the call ended: %v", call.Outcome())
	default:
	}
	require.Eventually(t, func() bool {
		c, err := b.lot.Park(ctx, park.ParkRequest{Leg: &leg{}})
		if err != nil {
			return false
		}
		require.NotEqual(t, o, c.Orbit(), "never the orbit a's call still holds")
		return true
	}, 10*time.Second, 100*time.Millisecond, "parks work again once the lot settled")
}

// Redis away for less than a lease and back with its data (a restart that
// saved it, a network cut): no park while it is away, and afterwards the
// lot is as it was, the call still parked and found from the other node.
func TestRedisBackWithItsDataLotUnchanged(t *testing.T) {
	srv := redistest.Start(t)
	a := startNode(t, srv.Addr(), "a", 3*time.Second)
	b := startNode(t, srv.Addr(), "b", 3*time.Second)
	ctx := context.Background()
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &leg{}, Parker: "sip:bob@example.com"})
	require.NoError(t, err)
	o := call.Orbit()
	eventually(t, "b sees the call", func() bool { _, ok := b.lot.Lookup(o); return ok })

	srv.Pause()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = b.lot.Park(short, park.ParkRequest{Leg: &leg{}})
	cancel()
	require.Error(t, err, "no park while Redis is away")
	time.Sleep(time.Second)
	srv.Resume()

	require.Eventually(t, func() bool {
		c, err := b.lot.Park(ctx, park.ParkRequest{Leg: &leg{}})
		if err != nil {
			return false
		}
		require.NotEqual(t, o, c.Orbit(), "never the orbit a's call still holds")
		return true
	}, 10*time.Second, 100*time.Millisecond, "parks work again")
	_, err = b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o})
	var ee *park.ElsewhereError
	require.ErrorAs(t, err, &ee, "the call is still a's")
	require.Equal(t, "a", ee.Node)
	info, ok := b.lot.Lookup(o)
	require.True(t, ok)
	require.Equal(t, call.ID(), info.ParkID)
	select {
	case <-call.Done():
		t.Fatalf("the call ended: %v", call.Outcome())
	default:
	}
}
