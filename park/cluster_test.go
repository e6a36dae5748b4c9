package park

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// testCluster stands in for the other nodes: it records what the lot
// shares and lets the test play their calls and events.
type testCluster struct {
	mu        sync.Mutex
	shared    []Event
	remote    map[orbit.Orbit]CallInfo
	addr      map[string]string
	followers []*Observer
	locateErr error
	take      func(context.Context, CallInfo) error                        // the lot's, from TakeOver
	handOver  func(context.Context, []CallInfo) (map[string]string, error) // nil: nobody takes anything
}

func (c *testCluster) TakeOver(take func(context.Context, CallInfo) error) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.take = take
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.take = nil
	}
}

func (c *testCluster) HandOver(ctx context.Context, calls []CallInfo) (map[string]string, error) {
	if c.handOver == nil {
		return nil, nil
	}
	return c.handOver(ctx, calls)
}

func newTestCluster() *testCluster {
	return &testCluster{remote: map[orbit.Orbit]CallInfo{}, addr: map[string]string{"b": "10.0.0.2:5060"}}
}

func (c *testCluster) Observe(e Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shared = append(c.shared, e)
}

func (c *testCluster) Follow(o Observer) (stop func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entry := &o // an ObserverFunc does not compare
	c.followers = append(c.followers, entry)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.followers = slices.DeleteFunc(c.followers, func(x *Observer) bool { return x == entry })
	}
}

func (c *testCluster) Calls() []CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []CallInfo
	for _, ci := range c.remote {
		out = append(out, ci)
	}
	return out
}

func (c *testCluster) Lookup(o orbit.Orbit) (CallInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := c.remote[o]
	return ci, ok
}

func (c *testCluster) Locate(_ context.Context, o orbit.Orbit) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locateErr != nil {
		return "", "", c.locateErr
	}
	ci, ok := c.remote[o]
	if !ok {
		return "", "", ErrNotParked
	}
	return ci.Node, c.addr[ci.Node], nil
}

// parkRemote plays node b parking a call in o.
func (c *testCluster) parkRemote(o orbit.Orbit, since time.Time) {
	ci := CallInfo{Orbit: o, ParkID: "remote-" + string(o), Party: "sip:carol@example.com", Since: since, State: Parked, Node: "b"}
	c.mu.Lock()
	c.remote[o] = ci
	followers := slices.Clone(c.followers)
	c.mu.Unlock()
	for _, f := range followers {
		(*f).Observe(Event{Kind: EventParked, Call: ci})
	}
}

func (c *testCluster) sharedKinds() []EventKind {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []EventKind
	for _, e := range c.shared {
		out = append(out, e.Kind)
	}
	return out
}

func TestClusterSeesTheLotsEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		_, err = lot.Retrieve(t.Context(), RetrieveRequest{Orbit: c.Orbit()})
		require.NoError(t, err)
		synctest.Wait()
		require.Equal(t, []EventKind{EventParked, EventEnded}, cl.sharedKinds(), "without any other observer")
	})
}

func TestRetrieveElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		cl.parkRemote("705", time.Now())

		_, err := lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "705"})
		var ee *ElsewhereError
		require.ErrorAs(t, err, &ee)
		require.ErrorIs(t, err, ErrElsewhere)
		require.Equal(t, ElsewhereError{Orbit: "705", Node: "b", Addr: "10.0.0.2:5060"}, *ee)
		require.Contains(t, err.Error(), "node b at 10.0.0.2:5060")

		_, err = lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "706"})
		require.ErrorIs(t, err, ErrNotParked, "nobody holds it")

		cl.locateErr = errors.Join(orbit.ErrUnavailable, errors.New("redis down"))
		_, err = lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "705"})
		require.ErrorIs(t, err, orbit.ErrUnavailable)
	})
}

func TestRecallAndDropElsewhere(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		cl.parkRemote("705", time.Now())
		for _, act := range []func(orbit.Orbit) error{lot.Recall, lot.Drop} {
			var ee *ElsewhereError
			require.ErrorAs(t, act("705"), &ee, "another node holds it: that node's lot must act")
			require.Equal(t, ElsewhereError{Orbit: "705", Node: "b"}, *ee)
			require.ErrorIs(t, act("706"), ErrNotParked)
		}
	})
}

func TestLookupCallsAndObserveSpanTheCluster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		var (
			mu   sync.Mutex
			seen []string
		)
		stop := lot.Observe(ObserverFunc(func(e Event) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, e.Kind.String()+" "+string(e.Call.Orbit)+" "+e.Call.Node)
		}))
		cl.parkRemote("709", time.Now())
		time.Sleep(time.Second)
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		synctest.Wait()

		info, ok := lot.Lookup("709")
		require.True(t, ok)
		require.Equal(t, "b", info.Node)
		local, ok := lot.Lookup(c.Orbit())
		require.True(t, ok)
		require.Empty(t, local.Node, "this lot's own call")
		calls := lot.Calls()
		require.Len(t, calls, 2)
		require.Equal(t, orbit.Orbit("709"), calls[0].Orbit, "oldest first, whichever node")
		require.Equal(t, 1, lot.Len(), "Len counts this lot's calls")
		mu.Lock()
		require.Equal(t, []string{"parked 709 b", "parked 701 "}, seen)
		mu.Unlock()

		stop()
		cl.parkRemote("708", time.Now())
		mu.Lock()
		require.Len(t, seen, 2, "stopped observers hear nothing more from other nodes")
		mu.Unlock()
	})
}

func TestDropParkedAndRinging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:bob@example.com": neverAnswer}}
		lot, alloc, log := newTestLot(t, "701-709", Config{Dialer: dialer})
		parked, ringing := &testLeg{}, &testLeg{}
		a, err := lot.Park(t.Context(), ParkRequest{Leg: parked, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		b, err := lot.Park(t.Context(), ParkRequest{Leg: ringing, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		require.NoError(t, lot.Recall(b.Orbit()))
		synctest.Wait()
		require.Equal(t, Recalling, b.Info().State)

		require.NoError(t, lot.Drop(a.Orbit()))
		require.NoError(t, lot.Drop(b.Orbit()))
		require.Equal(t, Dropped, a.Outcome())
		require.Equal(t, Dropped, b.Outcome())
		_, hangups := parked.counts()
		require.Equal(t, 1, hangups, "the operator hung it up")
		_, hangups = ringing.counts()
		require.Equal(t, 1, hangups)
		require.Zero(t, alloc.InUse())
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1, "the ringing recall was cancelled, none followed")
		require.Equal(t, []EventKind{EventParked, EventParked, EventRinging, EventEnded, EventEnded}, log.kinds(), "no ring-failed after the call ended")

		require.ErrorIs(t, lot.Drop(a.Orbit()), ErrNotParked)
		require.ErrorIs(t, lot.Drop("755x"), ErrUnknownOrbit)
		require.ErrorIs(t, lot.Recall("800"), ErrUnknownOrbit)
	})
}

func TestRecallNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:bob@example.com": answerAfter(time.Second)}}
		lot, _, log := newTestLot(t, "701-709", Config{Dialer: dialer})
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(5 * time.Second)
		require.NoError(t, lot.Recall(c.Orbit()))
		require.NoError(t, lot.Recall(c.Orbit()), "already ringing: left as it is")
		<-c.Done()
		require.Equal(t, 6*time.Second, time.Since(start), "rung at once, not after the pickup timeout")
		require.Equal(t, Recalled, c.Outcome())
		require.ErrorIs(t, lot.Recall(c.Orbit()), ErrNotParked)
		synctest.Wait()
		require.Equal(t, []EventKind{EventParked, EventRinging, EventEnded}, log.kinds())
	})
}

func TestLocate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := newTestCluster()
		lot, _, _ := newTestLot(t, "701-709", Config{Cluster: cl})
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		cl.parkRemote("705", time.Now())

		require.NoError(t, lot.Locate(t.Context(), RetrieveRequest{Orbit: c.Orbit()}), "here")
		require.ErrorIs(t, lot.Locate(t.Context(), RetrieveRequest{Orbit: c.Orbit(), ParkID: "other"}), ErrStale)
		var ee *ElsewhereError
		require.ErrorAs(t, lot.Locate(t.Context(), RetrieveRequest{Orbit: "705"}), &ee)
		require.Equal(t, "b", ee.Node)
		require.ErrorIs(t, lot.Locate(t.Context(), RetrieveRequest{Orbit: "706"}), ErrNotParked)
		require.ErrorIs(t, lot.Locate(t.Context(), RetrieveRequest{Orbit: "801"}), ErrUnknownOrbit)
		_, ok := lot.Lookup(c.Orbit())
		require.True(t, ok, "Locate takes nothing")
	})
}
