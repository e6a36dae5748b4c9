package park

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// portableLeg is a testLeg another node can continue.
type portableLeg struct {
	testLeg
	mu      sync.Mutex
	handoff string
	forgot  int
}

func (l *portableLeg) Handoff() ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return []byte(l.handoff), nil
}

func (l *portableLeg) Forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgot++
}

func (l *portableLeg) forgotten() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.forgot
}

// adopted records what a test Adopter was given.
type adopted struct {
	mu    sync.Mutex
	calls []CallInfo
	legs  []*portableLeg
	err   error // returned instead of a leg
}

func (a *adopted) Adopt(_ context.Context, c *Call) (Leg, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c.Info())
	if a.err != nil {
		return nil, a.err
	}
	leg := &portableLeg{handoff: "continued " + string(c.Info().Handoff)}
	a.legs = append(a.legs, leg)
	return leg, nil
}

// deadCall is a call as node b last wrote it before it died.
func deadCall(o orbit.Orbit, recallAt time.Time) CallInfo {
	return CallInfo{
		Orbit: o, ParkID: "b-" + string(o), Parker: "sip:bob@example.com", Party: "sip:carol@example.com",
		Since: time.Now().Add(-time.Minute), State: Parked, RecallAt: recallAt, Node: "b", Handoff: []byte("dialog"),
	}
}

func TestTakeOverKeepsTheCallAsItWas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		ad := &adopted{}
		dialer := &testDialer{}
		lot, alloc, log := newTestLot(t, "701-709", Config{Cluster: cl, Adopter: ad, Dialer: dialer})
		require.NotNil(t, cl.take, "a lot with an Adopter takes calls over")

		info := deadCall("705", time.Now().Add(30*time.Second))
		require.NoError(t, alloc.Reserve(t.Context(), "705")) // the cluster's claim
		require.NoError(t, cl.take(t.Context(), info))

		require.Len(t, ad.calls, 1)
		require.Equal(t, []byte("dialog"), ad.calls[0].Handoff, "the Adopter gets the old node's handoff")
		got, ok := lot.Lookup("705")
		require.True(t, ok)
		require.Equal(t, "b-705", got.ParkID)
		require.Equal(t, "sip:bob@example.com", got.Parker)
		require.Equal(t, info.Since, got.Since)
		require.Equal(t, info.RecallAt, got.RecallAt, "the pickup deadline is unchanged")
		require.Empty(t, got.Node, "the call is this lot's now")
		require.Equal(t, []byte("continued dialog"), got.Handoff, "and its handoff the new leg's")
		holds, _ := ad.legs[0].counts()
		require.Equal(t, 1, holds, "the new leg hears music")
		synctest.Wait()
		require.Equal(t, []EventKind{EventMoved}, log.kinds())

		time.Sleep(29 * time.Second)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Empty(t, reqs, "no recall before the old deadline")
		time.Sleep(2 * time.Second)
		synctest.Wait()
		reqs, _, _ = dialer.log()
		require.Len(t, reqs, 1, "the recall rings at the old deadline")
		require.Equal(t, "b-705", reqs[0].Call.ParkID)

		c, err := lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "705", ParkID: "b-705"})
		require.NoError(t, err, "a safe retrieve with the old park ID works")
		require.Same(t, ad.legs[0], c.Leg())
		synctest.Wait()
		require.Len(t, log.ended("b-705"), 1)
		require.NoError(t, lot.Shutdown(t.Context()))
		require.Zero(t, alloc.InUse())
	})
}

func TestTakeOverOfARingingCallRingsOnceMore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		dialer := &testDialer{}
		lot, alloc, _ := newTestLot(t, "701-709", Config{Cluster: cl, Adopter: &adopted{}, Dialer: dialer, MaxPickupAttempts: 2})
		info := deadCall("703", time.Time{})
		info.State, info.Attempts = Recalling, 2 // the last recall was ringing
		require.NoError(t, alloc.Reserve(t.Context(), "703"))
		require.NoError(t, cl.take(t.Context(), info))
		time.Sleep(time.Minute)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1, "the interrupted recall rings again, once")
		require.Equal(t, 2, reqs[0].Attempt)
		require.NoError(t, lot.Shutdown(t.Context()))
	})
}

func TestTakeOverRefusedIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		refused := errors.New("re-INVITE: 481 Call/Transaction Does Not Exist")
		lot, alloc, log := newTestLot(t, "701-709", Config{Cluster: cl, Adopter: &adopted{err: refused}})
		require.NoError(t, alloc.Reserve(t.Context(), "704"))
		require.NoError(t, cl.take(t.Context(), deadCall("704", time.Now().Add(time.Minute))))
		synctest.Wait()
		ends := log.ended("b-704")
		require.Len(t, ends, 1, "one end")
		require.Equal(t, Lost, ends[0].Outcome)
		require.ErrorIs(t, ends[0].Err, refused, "with the reason")
		require.Equal(t, []EventKind{EventEnded}, log.kinds())
		require.Zero(t, alloc.InUse(), "the orbit is free again")
		_, ok := lot.Lookup("704")
		require.False(t, ok)
	})
}

// A call whose handoff the cluster could not read (sealed with another
// key) comes without one: it is lost at once, once, without asking the
// Adopter, and its orbit is free again.
func TestTakeOverWithoutHandoffIsLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		ad := &adopted{}
		lot, alloc, log := newTestLot(t, "701-709", Config{Cluster: cl, Adopter: ad})
		require.NoError(t, alloc.Reserve(t.Context(), "704"))
		info := deadCall("704", time.Now().Add(time.Minute))
		info.Handoff = nil
		require.NoError(t, cl.take(t.Context(), info))
		synctest.Wait()
		ends := log.ended("b-704")
		require.Len(t, ends, 1, "one end")
		require.Equal(t, Lost, ends[0].Outcome)
		require.ErrorIs(t, ends[0].Err, errNoHandoff)
		ad.mu.Lock()
		require.Empty(t, ad.calls, "the Adopter is not asked")
		ad.mu.Unlock()
		require.Zero(t, alloc.InUse(), "the orbit is free again")
		_, ok := lot.Lookup("704")
		require.False(t, ok)
	})
}

func TestShutdownHandsCallsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		dialer := &testDialer{}
		lot, _, log := newTestLot(t, "701-709", Config{Cluster: cl, Dialer: dialer})
		kept := &portableLeg{handoff: "h1"}
		left := &portableLeg{handoff: "h2"}
		plain := &testLeg{}
		c1, err := lot.Park(t.Context(), ParkRequest{Leg: kept, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		c2, err := lot.Park(t.Context(), ParkRequest{Leg: left, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		c3, err := lot.Park(t.Context(), ParkRequest{Leg: plain, Parker: "sip:bob@example.com"})
		require.NoError(t, err)

		offered := make(chan []CallInfo, 1)
		cl.handOver = func(_ context.Context, calls []CallInfo) (map[string]string, error) {
			// Meanwhile a retrieve is told to come back.
			_, err := lot.Retrieve(t.Context(), RetrieveRequest{Orbit: c1.Orbit()})
			require.ErrorIs(t, err, orbit.ErrUnavailable)
			offered <- calls
			return map[string]string{c1.ID(): "c"}, nil // c took one; the other found no taker
		}
		shut := make(chan error)
		go func() { shut <- lot.Shutdown(context.Background()) }()
		synctest.Wait()
		calls := <-offered
		require.Len(t, calls, 2, "the portable legs are offered, the plain one is not")
		for _, ci := range calls {
			require.NotEmpty(t, ci.Handoff)
			require.False(t, ci.RecallAt.IsZero())
		}
		require.Equal(t, 1, kept.forgotten(), "the leg taken elsewhere is forgotten")
		_, hangups := kept.counts()
		require.Zero(t, hangups, "without a BYE")
		require.Equal(t, Moved, c1.Info().State)
		require.Equal(t, NoOutcome, c1.Outcome())
		<-c1.Done()
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 2, "the others are recalled at once")
		require.Zero(t, left.forgotten())
		var moved []Event
		for _, e := range log.all() {
			if e.Kind == EventMoved {
				moved = append(moved, e)
			}
		}
		require.Len(t, moved, 1)
		require.Equal(t, "c", moved[0].Call.Node, "naming where it went")
		require.Empty(t, log.ended(c1.ID()), "a call handed over does not end here")
		require.NoError(t, <-shut, "the recalls ring out, then the lot is empty")
		require.Equal(t, Dropped, c2.Outcome())
		require.Equal(t, Dropped, c3.Outcome())
	})
}

func TestDisownForgetsWhatWasTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		dialer := &testDialer{}
		lot, _, log := newTestLot(t, "701-709", Config{Cluster: cl, Dialer: dialer})
		p := &portableLeg{handoff: "h"}
		cp, err := lot.Park(t.Context(), ParkRequest{Leg: p, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		cn, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)

		require.NoError(t, lot.Disown(cp.Orbit()))
		require.NoError(t, lot.Disown(cn.Orbit()))
		require.ErrorIs(t, lot.Disown("709"), ErrNotParked)
		synctest.Wait()
		require.Equal(t, 1, p.forgotten())
		require.Equal(t, Moved, cp.Info().State)
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1, "the call that could not be taken over is recalled")
		require.Equal(t, cn.ID(), reqs[0].Call.ParkID)
		require.Empty(t, log.ended(cp.ID()))
		require.NoError(t, lot.Shutdown(t.Context()))
	})
}

func TestUpdateSharesTheNewHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		p := &portableLeg{handoff: "cseq 1"}
		c, err := lot.Park(t.Context(), ParkRequest{Leg: p})
		require.NoError(t, err)
		p.mu.Lock()
		p.handoff = "cseq 2"
		p.mu.Unlock()
		c.Update()
		synctest.Wait()
		cl.mu.Lock()
		shared := append([]Event(nil), cl.shared...)
		cl.mu.Unlock()
		require.Len(t, shared, 2)
		require.Equal(t, []byte("cseq 1"), shared[0].Call.Handoff)
		require.Equal(t, EventUpdated, shared[1].Kind)
		require.Equal(t, []byte("cseq 2"), shared[1].Call.Handoff)

		alone, _, log := newTestLot(t, "701-709", Config{})
		c, err = alone.Park(t.Context(), ParkRequest{Leg: &portableLeg{handoff: "x"}})
		require.NoError(t, err)
		require.Nil(t, c.Info().Handoff, "a lot alone reads no handoff")
		c.Update()
		synctest.Wait()
		require.Equal(t, []EventKind{EventParked}, log.kinds())
	})
}

// stallingAllocator is an in-memory allocator whose node can be made to
// look paused past its lease (orbit.Leased).
type stallingAllocator struct {
	*orbit.MemoryAllocator
	mu      sync.Mutex
	stalled bool
}

func (a *stallingAllocator) Stalled() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stalled
}

func (a *stallingAllocator) set(v bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stalled = v
}

// A node resumed from a pause rings no parker until it knows whether it
// still owns its calls: one taken over meanwhile is never recalled from
// here, one it kept is recalled once the doubt is gone.
func TestStalledLotRingsNobody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, err := orbit.ParseRange("701-709")
		require.NoError(t, err)
		mem, err := orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{})
		require.NoError(t, err)
		alloc := &stallingAllocator{MemoryAllocator: mem}
		dialer := &testDialer{}
		lot, err := NewLot(Config{Orbits: alloc, Cluster: newTestCluster(), Dialer: dialer, MusicOnHold: testMusic(t)})
		require.NoError(t, err)
		taken, err := lot.Park(t.Context(), ParkRequest{Leg: &portableLeg{handoff: "h"}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		kept, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)

		alloc.set(true) // paused past the pickup timeout
		require.True(t, lot.Stalled())
		time.Sleep(DefaultPickupTimeout + time.Second)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Empty(t, reqs, "no recall while stalled")

		require.NoError(t, lot.Disown(taken.Orbit())) // its renewal found it fenced
		alloc.set(false)
		time.Sleep(time.Second)
		synctest.Wait()
		reqs, _, _ = dialer.log()
		require.Len(t, reqs, 1, "the call it kept is recalled, the one taken over never")
		require.Equal(t, kept.ID(), reqs[0].Call.ParkID)
		require.NoError(t, lot.Shutdown(t.Context()))
	})
}

func TestTakeOverWhileForwardingRingsTheFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		dialer := &testDialer{}
		_, alloc, log := newTestLot(t, "701-709", Config{Cluster: cl, Adopter: &adopted{}, Dialer: dialer, FallbackURI: "sip:operator@example.com"})
		info := deadCall("706", time.Time{})
		info.State, info.Attempts = Forwarding, 1 // the recall had failed; the fallback rang
		require.NoError(t, alloc.Reserve(t.Context(), "706"))
		require.NoError(t, cl.take(t.Context(), info))
		time.Sleep(time.Minute)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1, "the fallback again, not the parker")
		require.Equal(t, Fallback, reqs[0].Purpose)
		require.Equal(t, "sip:operator@example.com", reqs[0].Target)
		ends := log.ended("b-706")
		require.Len(t, ends, 1)
		require.Equal(t, Dropped, ends[0].Outcome, "nobody answered")
	})
}
