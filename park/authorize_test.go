package park

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAuthorizeRetrieveDecidesBeforeTheOrbitIsSeen(t *testing.T) {
	ctx := t.Context()
	var asked []RetrieveRequest
	var lot *Lot
	onlyTheParker := func(_ context.Context, req RetrieveRequest) error {
		asked = append(asked, req)
		info, ok := lot.Lookup(req.Orbit) // the hook runs without the lot's lock
		if ok && info.Parker == req.Retriever {
			return nil
		}
		return errors.New("only the parker may retrieve")
	}
	lot, _, _ = newTestLot(t, "701-709", Config{AuthorizeRetrieve: onlyTheParker})
	parked, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
	require.NoError(t, err)

	_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: parked.Orbit(), Retriever: "sip:mallory@example.com"})
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.ErrorContains(t, err, "only the parker may retrieve")
	require.Equal(t, NoOutcome, parked.Outcome(), "a refused retrieve hands nothing over")

	// An empty orbit is refused the same way, not with ErrNotParked: the
	// refusal tells a stranger nothing about which orbits hold calls.
	_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: "709", Retriever: "sip:mallory@example.com"})
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.NotErrorIs(t, err, ErrNotParked)

	got, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: parked.Orbit(), Retriever: "sip:bob@example.com"})
	require.NoError(t, err)
	require.Same(t, parked, got)
	require.Len(t, asked, 3)

	// A hook that returns ErrNotAuthorized itself is not wrapped twice.
	lot2, _, _ := newTestLot(t, "701-709", Config{AuthorizeRetrieve: func(context.Context, RetrieveRequest) error { return ErrNotAuthorized }})
	_, err = lot2.Retrieve(ctx, RetrieveRequest{Orbit: "701"})
	require.Same(t, ErrNotAuthorized, err)
}

func TestAllowFrom(t *testing.T) {
	allow := AllowFrom(netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("192.0.2.7/32"))
	for _, tc := range []struct {
		source string
		ok     bool
	}{
		{"10.1.2.3:5060", true},
		{"10.2.0.1:5060", false},
		{"[::ffff:10.1.9.9]:5060", true}, // IPv4-mapped: compared as IPv4
		{"[2001:db8::1]:5060", true},
		{"[2001:db9::1]:5060", false},
		{"192.0.2.7:5062", true},
		{"192.0.2.8:5062", false},
	} {
		err := allow(t.Context(), RetrieveRequest{Orbit: "701", Source: netip.MustParseAddrPort(tc.source)})
		if tc.ok {
			require.NoError(t, err, tc.source)
			continue
		}
		require.ErrorIs(t, err, ErrNotAuthorized, tc.source)
		require.ErrorContains(t, err, "10.1.0.0/16,2001:db8::/32,192.0.2.7/32", "the error names the allowed prefixes")
	}
	err := allow(t.Context(), RetrieveRequest{Orbit: "701"})
	require.ErrorIs(t, err, ErrNotAuthorized)
	require.ErrorContains(t, err, "unknown")

	require.ErrorIs(t, AllowFrom()(t.Context(), RetrieveRequest{Source: netip.MustParseAddrPort("10.1.2.3:5060")}), ErrNotAuthorized)
	require.NoError(t, AllowFrom(netip.MustParsePrefix("10.1.2.3/8"))(t.Context(), RetrieveRequest{Source: netip.MustParseAddrPort("10.200.0.1:1")}), "prefixes are masked")
}
