package redisorbit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// aheadOf waits until a holds n orbits ahead and returns them.
func aheadOf(t *testing.T, a *Allocator, n int) []orbit.Orbit {
	t.Helper()
	var got []orbit.Orbit
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		got = slices.Clone(a.ahead)
		return len(got) == n && len(a.aheadUsed) == 0 && len(a.aheadKept) == 0 && len(a.releasing) == 0
	}, 5*time.Second, 5*time.Millisecond, "%d orbits held ahead", n)
	return got
}

// An orbit claimed ahead is handed out without Redis: Allocate succeeds
// while every command fails, and then claims in Redis again.
func TestAllocateTakesWhatWasClaimedAhead(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest})
	require.Equal(t, []orbit.Orbit{"701", "702", "703", "704"}, aheadOf(t, a, DefaultClaimAhead))
	node, _, ok, err := a.Holder(ctx(t), "701")
	require.NoError(t, err)
	require.True(t, ok && node == "a", "held ahead is held in Redis, under a's lease")

	l.m.SetError("LOADING") // Redis answers nothing
	o, err := a.Allocate(ctx(t))
	require.NoError(t, err, "no round trip")
	require.Equal(t, orbit.Orbit("701"), o)
	require.Eventually(t, func() bool {
		_, err := a.Allocate(ctx(t))
		return err != nil
	}, 5*time.Second, 5*time.Millisecond, "once a request to Redis failed, nothing held ahead is handed out")
	_, err = a.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrUnavailable, "parks are refused (CLUSTER.md 7)")

	l.m.SetError("")
	require.Eventually(t, func() bool {
		o, err := a.Allocate(ctx(t))
		return err == nil && o != "701"
	}, 5*time.Second, 10*time.Millisecond, "parks work again")
}

// With the lowest policy a lone node hands out what it would without
// claiming ahead: a released orbit below those held ahead is used first.
func TestClaimAheadKeepsTheLowestPolicy(t *testing.T) {
	l := newLot(t)
	// 60 orbits: a node never holds more than DefaultClaimAhead ahead.
	a := l.node("a", Config{Ranges: ranges(t, "701-760"), Policy: orbit.Lowest})
	aheadOf(t, a, DefaultClaimAhead)
	var got []orbit.Orbit
	for range 6 {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		got = append(got, o)
	}
	require.Equal(t, []orbit.Orbit{"701", "702", "703", "704", "705", "706"}, got)
	aheadOf(t, a, DefaultClaimAhead)
	require.NoError(t, a.Release(ctx(t), "702"))
	require.NoError(t, a.Release(ctx(t), "704"))
	require.Equal(t, []orbit.Orbit{"702", "704", "707", "708"}, aheadOf(t, a, DefaultClaimAhead))
	// 709 and 710, freed for 702 and 704, are claimed again in their turn.
	for _, want := range []orbit.Orbit{"702", "704", "707", "708", "709", "710", "711"} {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		require.Equal(t, want, o)
	}
}

// The lru policy holds ahead the orbits freed longest ago, in that order.
func TestClaimAheadKeepsTheLRUPolicy(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.LeastRecentlyFreed, Lease: DefaultLease})
	got := aheadOf(t, a, DefaultClaimAhead)
	require.Equal(t, []orbit.Orbit{"701", "702", "703", "704"}, got, "never used: table order")
	o, err := a.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), o)
	l.advance(time.Second)
	released(t, a, "701")
	for _, want := range []orbit.Orbit{"702", "703", "704", "705"} {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		require.Equal(t, want, o)
	}
}

// A directed park on b to an orbit a holds ahead: a gives it back and b
// gets it. Once a has put a call there, b gets 486's error at once.
func TestReserveAnOrbitHeldAheadElsewhere(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest})
	b := l.node("b", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest, ClaimAhead: -1})
	require.Equal(t, []orbit.Orbit{"701", "702", "703", "704"}, aheadOf(t, a, DefaultClaimAhead))
	start := time.Now()
	require.NoError(t, b.Reserve(ctx(t), "703"), "given back")
	require.Less(t, time.Since(start), aheadWait)
	require.Equal(t, []orbit.Orbit{"701", "702", "704"}, aheadOf(t, a, 3))

	o, err := a.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), o)
	require.ErrorIs(t, b.Reserve(ctx(t), "701"), orbit.ErrInUse, "a call sits there")
	require.Equal(t, []orbit.Orbit{"702", "704", "705", "706"}, aheadOf(t, a, DefaultClaimAhead), "half used: claimed again")

	require.NoError(t, a.Reserve(ctx(t), "704"), "a directed park to its own orbit held ahead")
	require.Equal(t, []orbit.Orbit{"702", "705", "706"}, aheadOf(t, a, 3))
}

// Nearly full, a lot holds nothing ahead: every orbit can be parked in,
// from any node.
func TestNearlyFullLotHoldsNothingAhead(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest})
	b := l.node("b", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest, ClaimAhead: -1})
	aheadOf(t, a, DefaultClaimAhead)
	got := 0
	deadline := time.Now().Add(5 * time.Second)
	for got < 99 && time.Now().Before(deadline) {
		if _, err := b.Allocate(ctx(t)); err == nil {
			got++
		} else {
			require.ErrorIs(t, err, orbit.ErrFull)
			time.Sleep(20 * time.Millisecond)
		}
	}
	require.Equal(t, 99, got, "a gave back what it held ahead")
	require.Empty(t, aheadOf(t, a, 0))
}

// An orbit held ahead is not handed out once the lease may have run out
// (a node paused past it): Allocate asks Redis, which fences the node.
func TestStaleLeaseHandsOutNothingAhead(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest, Lease: 2 * time.Second})
	aheadOf(t, a, DefaultClaimAhead)
	a.mu.Lock()
	a.renewedAt = a.renewedAt.Add(-2 * time.Second) // as if paused since
	a.mu.Unlock()
	l.advance(3 * time.Second)
	b := l.node("b", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest, ClaimAhead: -1})
	require.NoError(t, b.Reserve(ctx(t), "701"), "a's lease ran out: reaped")
	o, err := a.Allocate(context.Background())
	require.NoError(t, err, "a rejoins and claims")
	require.NotEqual(t, orbit.Orbit("701"), o)
}

// A park that finds nothing held ahead has the sync loop claim at once,
// without gathering for syncLinger first.
func TestEmptyAheadWakesTheSyncAtOnce(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "701-799"), Policy: orbit.Lowest})
	aheadOf(t, a, DefaultClaimAhead)
	a.mu.Lock()
	a.linger = time.Hour // a park waiting out the linger would fail the test
	a.mu.Unlock()
	for i := range 3 * DefaultClaimAhead {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		require.Equal(t, orbit.Orbit(fmt.Sprint(701+i)), o)
	}
}

// Parks that come faster than a sync brings orbits make the node hold
// more ahead, up to aheadMaxOf; quiet ticks bring it back down.
func TestClaimAheadGrowsUnderLoad(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Ranges: ranges(t, "1000-1999"), Policy: orbit.Lowest})
	aheadOf(t, a, DefaultClaimAhead)
	for range 40 {
		_, err := a.Allocate(ctx(t))
		require.NoError(t, err)
	}
	a.mu.Lock()
	grown, most := a.target, a.aheadMax
	a.mu.Unlock()
	require.Greater(t, grown, DefaultClaimAhead, "it held more once parks waited")
	require.LessOrEqual(t, grown, most)
	require.Equal(t, 64, most, "a thousand orbits: at most 64 ahead")
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.target < grown
	}, 5*time.Second, 50*time.Millisecond, "quiet ticks bring it down")
}
