package sipadapter

import (
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func guardFor(t *testing.T, l Limits) *sourceGuard {
	t.Helper()
	l, err := l.withDefaults()
	require.NoError(t, err)
	return newSourceGuard(l)
}

func TestFailedRetrievesBlockASourceForAWhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := guardFor(t, Limits{FailedRetrieves: 3, FailedRetrieveWindow: time.Minute, FailedRetrieveBlock: 5 * time.Minute})
		guesser := netip.MustParseAddr("192.0.2.66")
		other := netip.MustParseAddr("192.0.2.67")

		require.False(t, g.failedRetrieve(guesser))
		require.False(t, g.failedRetrieve(guesser))
		blocked, _ := g.blocked(guesser)
		require.False(t, blocked, "two failures of three allowed")
		require.True(t, g.failedRetrieve(guesser), "the third failure blocks")
		blocked, until := g.blocked(guesser)
		require.True(t, blocked)
		require.Equal(t, time.Now().Add(5*time.Minute), until)
		blocked, _ = g.blocked(other)
		require.False(t, blocked, "one source's guessing blocks only that source")

		time.Sleep(5*time.Minute - time.Second)
		blocked, _ = g.blocked(guesser)
		require.True(t, blocked, "still blocked a second before the end")
		time.Sleep(time.Second)
		blocked, _ = g.blocked(guesser)
		require.False(t, blocked, "free again after FailedRetrieveBlock")

		// Failures spread wider than the window never add up to a block.
		for range 10 {
			require.False(t, g.failedRetrieve(other))
			time.Sleep(31 * time.Second)
		}
		blocked, _ = g.blocked(other)
		require.False(t, blocked)
	})
}

func TestLimitsOffAndTrusted(t *testing.T) {
	pbx := netip.MustParseAddr("10.0.0.5")
	g := guardFor(t, Limits{FailedRetrieves: 1, DialogsPerSource: 1, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}})
	for range 100 {
		require.False(t, g.failedRetrieve(pbx))
		require.True(t, g.admitDialog(pbx))
	}
	blocked, _ := g.blocked(pbx)
	require.False(t, blocked, "a trusted source is never blocked")
	require.Zero(t, g.dialogsFrom(pbx), "nor counted")

	require.True(t, g.admitDialog(netip.Addr{}), "a request with no known source is not limited")

	off := guardFor(t, Limits{FailedRetrieves: -1, DialogsPerSource: -1})
	stranger := netip.MustParseAddr("192.0.2.1")
	for range 100 {
		require.False(t, off.failedRetrieve(stranger))
		require.True(t, off.admitDialog(stranger))
	}
	blocked, _ = off.blocked(stranger)
	require.False(t, blocked)
	require.Zero(t, off.tracked())
}

func TestGuardCountsDialogsPerSource(t *testing.T) {
	g := guardFor(t, Limits{DialogsPerSource: 2})
	phone := netip.MustParseAddr("192.0.2.10")
	require.True(t, g.admitDialog(phone))
	require.True(t, g.admitDialog(phone))
	require.False(t, g.admitDialog(phone), "the third is over the cap")
	require.True(t, g.admitDialog(netip.MustParseAddr("192.0.2.11")), "another source has its own count")
	g.releaseDialog(phone)
	require.True(t, g.admitDialog(phone), "a released dialog frees a slot")
	g.releaseDialog(phone)
	g.releaseDialog(phone)
	require.Zero(t, g.dialogsFrom(phone))
}

func TestFailureTableIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := guardFor(t, Limits{FailedRetrieves: 5})
		addr := func(i int) netip.Addr {
			return netip.MustParseAddr(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		}
		for i := range maxTrackedSources + 500 {
			g.failedRetrieve(addr(i))
		}
		require.Equal(t, maxTrackedSources, g.tracked(), "a spoofed flood cannot grow the table past its bound")

		// Once their windows have passed, old entries make room again.
		time.Sleep(DefaultFailedRetrieveWindow)
		g.failedRetrieve(addr(maxTrackedSources + 1000))
		require.Equal(t, 1, g.tracked())
	})
}

func TestLimitsValidation(t *testing.T) {
	_, err := Limits{FailedRetrieveWindow: -time.Second}.withDefaults()
	require.ErrorContains(t, err, "Config.Limits.FailedRetrieveWindow")
	_, err = Limits{FailedRetrieveBlock: -time.Second}.withDefaults()
	require.ErrorContains(t, err, "Config.Limits.FailedRetrieveBlock")
	_, err = Limits{Trusted: []netip.Prefix{{}}}.withDefaults()
	require.ErrorContains(t, err, "Config.Limits.Trusted[0]")
	l, err := Limits{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, Limits{
		FailedRetrieves: DefaultFailedRetrieves, FailedRetrieveWindow: DefaultFailedRetrieveWindow,
		FailedRetrieveBlock: DefaultFailedRetrieveBlock, DialogsPerSource: DefaultDialogsPerSource,
		SubscriptionsPerSource: DefaultSubscriptionsPerSource,
	}, l)
}

// tracked returns how many sources the failure table holds.
func (g *sourceGuard) tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.failures)
}

// dialogsFrom returns how many dialogs src holds.
func (g *sourceGuard) dialogsFrom(src netip.Addr) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dialogs[src]
}
