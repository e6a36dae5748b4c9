package sipadapter_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// CLUSTER.md 10: node A falls silent past its lease; B takes its parked
// call over with a re-INVITE in the same dialog, the party hears B's
// music, A (waking) forgets the call without a BYE, and the call is
// retrieved at B with audio both ways, its park ID unchanged.
func TestTakeoverAfterANodeFallsSilent(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			m := miniredis.RunT(t)
			now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
			m.SetTime(now)
			a := clusterNodeLease(t, m, "a", sipadapter.Config{}, 12000, 2*time.Second)
			b := clusterNodeLease(t, m, "b", sipadapter.Config{}, 12500, time.Minute)
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: transport})
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: transport})
			ctx := ctxFor(t, 30*time.Second)

			parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{})
			require.NoError(t, err)
			o := orbit.Orbit(parked.Orbit())
			require.NoError(t, parked.WaitReceived(ctx, 10))
			// The party puts the call on hold and back: the record follows
			// each re-INVITE, so the takeover's SDP version is above the last
			// one the party saw (else it would take the new address for no
			// change, RFC 3264 §8).
			require.NoError(t, parked.Hold(ctx))
			require.NoError(t, parked.Resume(ctx))
			var info park.CallInfo
			waitUntil(t, 10*time.Second, "the call's record in Redis has the handoff as it is now", func() bool {
				var ok bool
				info, ok = a.Lot().Lookup(o)
				rec := m.HGet("{callpark:callpark}:calls", string(o)) // within about 10 ms, longer under load
				return ok && len(info.Handoff) > 0 && strings.Contains(rec, base64.StdEncoding.EncodeToString(info.Handoff))
			})
			first := parked.RemoteSDP()
			waitUntil(t, 10*time.Second, "b hears of the call", func() bool { _, ok := b.Lot().Lookup(o); return ok })

			m.SetTime(now.Add(3 * time.Second)) // a's lease runs out
			waitUntil(t, 10*time.Second, "b holds the call", func() bool { got, ok := b.Lot().Lookup(o); return ok && got.Node == "" })
			got, _ := b.Lot().Lookup(o)
			require.Equal(t, info.ParkID, got.ParkID)
			require.Equal(t, info.RecallAt.UnixMilli(), got.RecallAt.UnixMilli())
			sdp := parked.RemoteSDP()
			require.Equal(t, first.SessionID, sdp.SessionID, "same o= session id")
			require.Greater(t, sdp.SessionVersion, first.SessionVersion)
			require.NotEqual(t, first.Addr, sdp.Addr, "music from b's port")
			waitUntil(t, 10*time.Second, "a forgets the call", func() bool { return a.Lot().Len() == 0 && a.OpenLegs() == 0 })
			before := parked.Received()
			require.NoError(t, parked.WaitReceived(ctx, before+10), "music again, from b")
			select {
			case <-parked.Done():
				t.Fatal("the parked call ended")
			default:
			}

			talk, err := bob.Call(ctx, b.OrbitURI(o), parktest.CallOptions{})
			require.NoError(t, err, "retrieved at b")
			before = parked.Received()
			require.NoError(t, talk.WaitReceived(ctx, 25))
			require.NoError(t, parked.WaitReceived(ctx, before+25))

			// Re-parked from b (REFER), and retrieved again there.
			res, err := talk.Refer(ctx, b.ParkURI())
			require.NoError(t, err)
			require.Equal(t, 200, res.FinalStatus, "re-parked at b")
			again, ok := b.Lot().Lookup(orbit.Orbit(res.Orbit))
			require.True(t, ok)
			require.NotEqual(t, info.ParkID, again.ParkID, "a re-park is a new park")
			require.NoError(t, talk.Hangup(ctx))
			require.NoError(t, parked.WaitReceived(ctx, parked.Received()+10), "music again, re-parked")
			talk, err = bob.Call(ctx, b.OrbitURI(orbit.Orbit(res.Orbit)), parktest.CallOptions{Mute: true})
			require.NoError(t, err, "and retrieved again")
			require.NoError(t, talk.Hangup(ctx))
			select {
			case <-parked.Done():
				require.True(t, parked.EndedByRemote(), "b sends the BYE, in the dialog a began")
			case <-ctx.Done():
				t.Fatal("the BYE did not reach alice")
			}
		})
	}
}
