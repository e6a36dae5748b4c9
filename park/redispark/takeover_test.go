package redispark

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// portable is a leg another node can continue.
type portable struct {
	leg
	handoff string
	mu      sync.Mutex
	forgot  int
}

func (p *portable) Handoff() ([]byte, error) { return []byte(p.handoff), nil }

func (p *portable) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgot++
}

func (p *portable) forgotten() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.forgot
}

// adopter continues calls as a host would, and records what it was given.
type adopter struct {
	node string
	err  error
	mu   sync.Mutex
	got  []park.CallInfo
}

func (a *adopter) Adopt(_ context.Context, c *park.Call) (park.Leg, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, c.Info())
	if a.err != nil {
		return nil, a.err
	}
	return &portable{handoff: "continued at " + a.node}, nil
}

func (a *adopter) adopted() []park.CallInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]park.CallInfo(nil), a.got...)
}

func withAdopter(a *adopter) func(*park.Config) {
	return func(c *park.Config) { c.Adopter = a }
}

// ends counts the EventEnded of a park ID a node's observers heard, its own
// lot's and the other nodes' alike.
func (h *heard) ends(parkID string) (n int, last park.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Kind == park.EventEnded && e.Call.ParkID == parkID {
			n++
			last = e
		}
	}
	return n, last
}

func TestDeadNodesCallsAreTakenOver(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := startNode(t, m.Addr(), "a", 2*time.Second)
	adB := &adopter{node: "b"}
	b := startNode(t, m.Addr(), "b", time.Minute, withAdopter(adB))
	ctx := context.Background()
	legA := &portable{handoff: "dialog at a"}
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: legA, Parker: "sip:bob@example.com", Party: "sip:alice@example.com"})
	require.NoError(t, err)
	o := call.Orbit()
	eventually(t, "b hears the park", func() bool { _, ok := b.lot.Lookup(o); return ok })

	// a falls silent past its lease; b's reaper drops it and b takes the
	// call over.
	m.SetTime(now.Add(3 * time.Second))
	eventually(t, "b takes the call over", func() bool { return len(adB.adopted()) == 1 })
	got := adB.adopted()[0]
	require.Equal(t, []byte("dialog at a"), got.Handoff, "the handoff a wrote")
	require.Equal(t, call.ID(), got.ParkID)
	require.Equal(t, "sip:bob@example.com", got.Parker)
	require.Equal(t, call.Info().RecallAt.UnixMilli(), got.RecallAt.UnixMilli(), "the pickup deadline")
	eventually(t, "b's lot holds it", func() bool { info, ok := b.lot.Lookup(o); return ok && info.Node == "" })
	require.Len(t, b.lot.Calls(), 1, "once, not also as a's")
	n, _ := b.heard.ends(call.ID())
	require.Zero(t, n, "a call taken over has not ended")

	// a wakes, finds its orbit taken and forgets the call without a word.
	eventually(t, "a forgets the call", func() bool { return legA.forgotten() == 1 })
	require.Equal(t, park.Moved, call.Info().State)
	require.Equal(t, park.NoOutcome, call.Outcome())

	// Retrieve works from the new node, and the call ends once, for all.
	c, err := b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o, ParkID: call.ID()})
	require.NoError(t, err)
	require.Equal(t, "continued at b", string(c.Info().Handoff))
	eventually(t, "a hears the end", func() bool { n, _ := a.heard.ends(call.ID()); return n == 1 })
	n, e := b.heard.ends(call.ID())
	require.Equal(t, 1, n)
	require.Equal(t, park.Retrieved, e.Outcome)
}

func TestRefusedTakeoverIsLostOnce(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := startNode(t, m.Addr(), "a", 2*time.Second)
	refused := errors.New("re-INVITE: 481 Call/Transaction Does Not Exist")
	b := startNode(t, m.Addr(), "b", time.Minute, withAdopter(&adopter{node: "b", err: refused}))
	c := startNode(t, m.Addr(), "c", time.Minute) // takes nothing over, watches
	ctx := context.Background()
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &portable{handoff: "h"}})
	require.NoError(t, err)
	eventually(t, "c hears the park", func() bool { _, ok := c.lot.Lookup(call.Orbit()); return ok })

	m.SetTime(now.Add(3 * time.Second))
	eventually(t, "b's end is heard at c", func() bool { n, _ := c.heard.ends(call.ID()); return n == 1 })
	_, e := c.heard.ends(call.ID())
	require.Equal(t, park.Lost, e.Outcome)
	require.ErrorContains(t, e.Err, "481", "with the reason")
	n, _ := b.heard.ends(call.ID())
	require.Equal(t, 1, n)
	time.Sleep(100 * time.Millisecond)
	n, _ = c.heard.ends(call.ID())
	require.Equal(t, 1, n, "exactly one end")
	o, err := c.alloc.Allocate(ctx)
	require.NoError(t, err)
	require.Equal(t, call.Orbit(), o, "the orbit is free again")
}

func TestOrphanNobodyTakesIsLost(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := startNode(t, m.Addr(), "a", 2*time.Second)
	b := startNode(t, m.Addr(), "b", time.Minute) // no Adopter
	ctx := context.Background()
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &portable{handoff: "h"}})
	require.NoError(t, err)
	eventually(t, "b hears the park", func() bool { _, ok := b.lot.Lookup(call.Orbit()); return ok })

	m.SetTime(now.Add(3 * time.Second))
	time.Sleep(600 * time.Millisecond) // a reap
	_, ok := b.lot.Lookup(call.Orbit())
	require.True(t, ok, "the call waits to be taken over")
	_, err = b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: call.Orbit()})
	require.ErrorIs(t, err, orbit.ErrUnavailable, "a retrieve meanwhile is told to come back")

	m.SetTime(now.Add(20 * time.Second))
	eventually(t, "b hears it lost", func() bool { n, _ := b.heard.ends(call.ID()); return n == 1 })
	_, e := b.heard.ends(call.ID())
	require.Equal(t, park.Lost, e.Outcome)
	require.ErrorIs(t, e.Err, errNotTaken)
}

func TestShutdownHandsCallsToAnotherNode(t *testing.T) {
	m := miniredis.RunT(t)
	a := startNode(t, m.Addr(), "a", 10*time.Second)
	adB := &adopter{node: "b"}
	b := startNode(t, m.Addr(), "b", 10*time.Second, withAdopter(adB))
	ctx := context.Background()
	var calls []*park.Call
	var legs []*portable
	for range 3 {
		l := &portable{handoff: "h"}
		c, err := a.lot.Park(ctx, park.ParkRequest{Leg: l, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		calls, legs = append(calls, c), append(legs, l)
	}
	start := time.Now()
	require.NoError(t, a.lot.Shutdown(ctx))
	t.Logf("handed 3 calls over in %v", time.Since(start).Round(time.Millisecond))
	for i, c := range calls {
		require.Equal(t, park.Moved, c.Info().State, "call %d", i)
		require.Equal(t, 1, legs[i].forgotten())
		eventually(t, "b holds it", func() bool { info, ok := b.lot.Lookup(c.Orbit()); return ok && info.Node == "" })
		info, _ := b.lot.Lookup(c.Orbit())
		require.Equal(t, c.ID(), info.ParkID)
	}
	eventually(t, "b took all three", func() bool { return len(adB.adopted()) == 3 })
	require.Less(t, time.Since(start), handOverWait, "without waiting out the bound")
}

func TestShutdownAloneRecalls(t *testing.T) {
	m := miniredis.RunT(t)
	a := startNode(t, m.Addr(), "a", 10*time.Second)
	l := &portable{handoff: "h"}
	c, err := a.lot.Park(context.Background(), park.ParkRequest{Leg: l})
	require.NoError(t, err)
	require.NoError(t, a.lot.Shutdown(context.Background()))
	require.Equal(t, park.Dropped, c.Outcome(), "no other node: recalled (no Dialer here: dropped)")
	require.Zero(t, l.forgotten())
}
