package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/parkflags"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/parktest"
)

// clusterPBX starts a PBX sharing the lot in m, wired as main wires -redis.
func clusterPBX(t *testing.T, m *miniredis.Miniredis, node string, rtp int) *PBX {
	return clusterPBXLease(t, m, node, rtp, 2*time.Second)
}

// clusterPBXLease is clusterPBX with the node's lease.
func clusterPBXLease(t *testing.T, m *miniredis.Miniredis, node string, rtp int, lease time.Duration) *PBX {
	t.Helper()
	table, err := orbit.ParseTable("701-799")
	require.NoError(t, err)
	cs := parkflags.ClusterSettings{Redis: &redis.Options{Addr: m.Addr()}, Name: "callpark", Node: node, Lease: lease}
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := cs.Join(ctx, table, orbit.LeastRecentlyFreed, logger)
	require.NoError(t, err)
	t.Cleanup(func() { cl.Leave(logger) })        // after the PBX's own cleanup, registered next
	users, err := LoadUsers("testdata/users.txt") // digest auth on every INVITE
	require.NoError(t, err)
	cfg := Config{Orbits: table, Users: users, RTPPortMin: rtp, RTPPortMax: rtp + 499, TrustForwarded: cl.TrustForwarded}
	cl.Apply(&cfg.Park)
	p := testPBX(t, cfg)
	cl.Bind(p.Lot())
	require.NoError(t, cl.Listening(p.Addr()))
	return p
}

// Two PBXs on one lot: a call parked at PBX A is retrieved by a phone
// registered at PBX B, which authenticates it and forwards the retrieve;
// A trusts a forward from a node of the cluster instead of challenging it
// again (the phone's credentials were for B).
func TestRetrieveAtAnotherPBX(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterPBX(t, m, "a", 16000)
	b := clusterPBX(t, m, "b", 16500)
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, a, "101", parktest.PhoneOptions{Password: "battery:staple"})
	bob := phone(t, b, "100", parktest.PhoneOptions{Password: "correct-horse"})

	parked, err := alice.Call(ctx, a.URI("700"), parktest.CallOptions{})
	require.NoError(t, err)
	o := parked.Orbit()
	require.NotEmpty(t, o)
	waitUntil(t, 5*time.Second, "b sees the call", func() bool { _, ok := b.Lot().Lookup(orbit.Orbit(o)); return ok })

	talk, err := bob.Call(ctx, b.URI(o), parktest.CallOptions{})
	require.NoError(t, err)
	require.Contains(t, talk.Header("Contact"), a.Addr().String(), "the dialog is with the PBX holding the call")
	talking(t, ctx, parked, talk, 25)
	require.NoError(t, talk.Hangup(ctx))
	ended(t, ctx, parked)
}

// A PBX's parked legs are handed over like the park server's: PBX A falls
// silent past its lease, PBX B re-INVITEs the parked phone (no digest
// challenge: B sends the request, the phone answers it) and plays its
// music; a phone registered at B retrieves it there.
func TestParkedCallTakenOverByAnotherPBX(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := clusterPBXLease(t, m, "a", 16000, 2*time.Second)
	b := clusterPBXLease(t, m, "b", 16500, time.Minute)
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, a, "101", parktest.PhoneOptions{Password: "battery:staple"})
	bob := phone(t, b, "100", parktest.PhoneOptions{Password: "correct-horse"})

	parked, err := alice.Call(ctx, a.URI("700"), parktest.CallOptions{})
	require.NoError(t, err)
	o := orbit.Orbit(parked.Orbit())
	require.NoError(t, parked.WaitReceived(ctx, 5))
	first := parked.RemoteSDP().Addr
	waitUntil(t, 5*time.Second, "b sees the call", func() bool { _, ok := b.Lot().Lookup(o); return ok })

	m.SetTime(now.Add(3 * time.Second)) // a's lease runs out
	waitUntil(t, 10*time.Second, "b holds the call", func() bool { info, ok := b.Lot().Lookup(o); return ok && info.Node == "" })
	waitUntil(t, 5*time.Second, "alice took b's re-INVITE", func() bool { return parked.RemoteSDP().Addr != first })
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+10), "music from b")
	waitUntil(t, 5*time.Second, "a forgets the call", func() bool { return a.Lot().Len() == 0 })

	talk, err := bob.Call(ctx, b.URI(string(o)), parktest.CallOptions{})
	require.NoError(t, err)
	require.Contains(t, talk.Header("Contact"), b.Addr().String())
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25), "audio both ways")
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
}
