package redisorbit

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// putRecord writes the record park/redispark would for a call in o: with
// a handoff, it can be taken over.
func (l *lot) putRecord(o orbit.Orbit, portable bool) {
	rec := `{"orbit":"` + string(o) + `","park_id":"p` + string(o) + `","node":"a"}`
	if portable {
		rec = `{"orbit":"` + string(o) + `","park_id":"p` + string(o) + `","node":"a","handoff":"aGVsbG8="}`
	}
	require.NoError(l.t, l.client().HSet(ctx(l.t), "{callpark:callpark}:calls", string(o), rec).Err())
}

func TestDeadNodesPortableCallsAreOrphansOneTakerEach(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Lease: 2 * time.Second, Policy: orbit.Lowest})
	b := l.node("b", Config{Lease: time.Minute, Policy: orbit.Lowest})
	c := l.node("c", Config{Lease: time.Minute, Policy: orbit.Lowest})
	for range 2 {
		_, err := a.Allocate(ctx(t))
		require.NoError(t, err)
	}
	l.putRecord("701", true)
	l.putRecord("702", false)

	l.advance(2*time.Second + time.Millisecond)
	orphans, err := b.Orphans(ctx(t))
	require.NoError(t, err)
	require.Equal(t, []Orphan{{Orbit: "701", From: "a"}}, orphans, "the portable call waits; the other orbit is free")
	_, _, ok, err := b.Holder(ctx(t), "701")
	require.ErrorIs(t, err, orbit.ErrUnavailable, "a retrieve meanwhile: come back")
	require.False(t, ok)
	err = b.Reserve(ctx(t), "701")
	require.ErrorIs(t, err, orbit.ErrInUse, "no park into it")

	// b and c race for it: one wins.
	var wg sync.WaitGroup
	won := make(chan *Allocator, 2)
	for _, n := range []*Allocator{b, c} {
		wg.Go(func() {
			from, rec, ok, err := n.TakeOver(ctx(t), "701")
			if assertNoError(t, err) && ok {
				require.Equal(t, "a", from)
				require.Contains(t, rec, `"park_id":"p701"`)
				won <- n
			}
		})
	}
	wg.Wait()
	close(won)
	var winners []*Allocator
	for w := range won {
		winners = append(winners, w)
	}
	require.Len(t, winners, 1)
	node, _, ok, err := b.Holder(ctx(t), "701")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, winners[0].Node(), node)
	require.NoError(t, winners[0].Release(ctx(t), "701"), "the taker holds it as its own")
	orphans, err = b.Orphans(ctx(t))
	require.NoError(t, err)
	require.Empty(t, orphans)
}

func TestHandOverLeavesOnlyPortableCalls(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Lease: time.Minute, Policy: orbit.Lowest})
	b := l.node("b", Config{Lease: time.Minute, Policy: orbit.Lowest})
	for range 3 {
		_, err := a.Allocate(ctx(t))
		require.NoError(t, err)
	}
	l.putRecord("701", true)
	l.putRecord("702", false)
	handed, err := a.HandOver(ctx(t), []orbit.Orbit{"701", "702", "703"})
	require.NoError(t, err)
	require.Equal(t, []orbit.Orbit{"701"}, handed)
	require.ErrorIs(t, a.Release(ctx(t), "701"), orbit.ErrNotInUse, "no longer a's")
	_, _, handedTwice, err := b.TakeOver(ctx(t), "702")
	require.NoError(t, err)
	require.False(t, handedTwice, "702 is no orphan")
	_, _, ok, err := b.TakeOver(ctx(t), "701")
	require.NoError(t, err)
	require.True(t, ok)
}

func TestOrphanNobodyTakesIsFreed(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Lease: 2 * time.Second, Policy: orbit.Lowest})
	b := l.node("b", Config{Lease: time.Minute, Policy: orbit.Lowest})
	_, err := a.Allocate(ctx(t))
	require.NoError(t, err)
	l.putRecord("701", true)
	sub := l.client().Subscribe(ctx(t), "{callpark:callpark}:events")
	defer sub.Close()
	_, err = sub.Receive(ctx(t))
	require.NoError(t, err)
	l.advance(2*time.Second + time.Millisecond)
	msg, err := sub.ReceiveMessage(ctx(t))
	require.NoError(t, err)
	require.Contains(t, msg.Payload, `"orphans":["701"]`)

	l.advance(16 * time.Second)
	msg, err = sub.ReceiveMessage(ctx(t))
	require.NoError(t, err)
	require.Contains(t, msg.Payload, `"kind":"lost"`)
	require.Contains(t, msg.Payload, `"701"`)
	o, err := b.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), o, "free again")
	n, err := l.client().HExists(ctx(t), "{callpark:callpark}:calls", "701").Result()
	require.NoError(t, err)
	require.False(t, n, "its record gone")
}

// Stalled: true while no renewal attempt has ended for most of a lease (a
// paused process), false again once one has; true while OnLost runs.
func TestStalledAfterASilence(t *testing.T) {
	l := newLot(t)
	release := make(chan struct{})
	a := l.node("a", Config{Lease: 2 * time.Second, OnLost: func([]orbit.Orbit) { <-release }})
	l.node("b", Config{Lease: time.Minute}) // the heartbeat's grace then does not cover a 3 s gap
	require.False(t, a.Stalled())
	a.triedAt.Store(int64(time.Since(a.born)) - int64(2*time.Second)) // as after a 2 s pause
	require.True(t, a.Stalled(), "no attempt for a lease")
	require.Eventually(t, func() bool { return !a.Stalled() }, 2*time.Second, 10*time.Millisecond, "the next renewal ends the doubt")

	_, err := a.Allocate(ctx(t))
	require.NoError(t, err)
	l.advance(3 * time.Second) // the lease runs out: the renewal finds a fenced
	require.Eventually(t, a.Stalled, 3*time.Second, 10*time.Millisecond, "stalled while the lot is told what it lost")
	close(release)
	require.Eventually(t, func() bool { return !a.Stalled() }, 3*time.Second, 10*time.Millisecond)
}
