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
	t.Helper()
	table, err := orbit.ParseTable("701-799")
	require.NoError(t, err)
	cs := parkflags.ClusterSettings{Redis: &redis.Options{Addr: m.Addr()}, Name: "callpark", Node: node, Lease: 2 * time.Second}
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
