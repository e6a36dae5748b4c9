package redispark

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park"
)

// node is one park server of a test cluster: its allocator, directory and
// lot, and what its observers heard from the other nodes.
type node struct {
	name  string
	alloc *redisorbit.Allocator
	dir   *Directory
	lot   *park.Lot
	heard *heard
}

type heard struct {
	mu     sync.Mutex
	events []park.Event
}

func (h *heard) Observe(e park.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, e)
}

// last returns the last event heard about orbit o from another node.
func (h *heard) last(o orbit.Orbit) (park.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.events) - 1; i >= 0; i-- {
		if h.events[i].Call.Orbit == o && h.events[i].Call.Node != "" {
			return h.events[i], true
		}
	}
	return park.Event{}, false
}

type leg struct{}

func (*leg) Hold(context.Context, park.Music) error { return nil }
func (*leg) Hangup(context.Context) error           { return nil }

func startNode(t *testing.T, addr, name string, lease time.Duration, opts ...func(*park.Config)) *node {
	t.Helper()
	return startSealedNode(t, addr, name, lease, nil, opts...)
}

// startSealedNode starts a node whose directory seals handoffs with key
// (Config.HandoffKey; nil: in the clear).
func startSealedNode(t *testing.T, addr, name string, lease time.Duration, key []byte, opts ...func(*park.Config)) *node {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	r, err := orbit.ParseRange("701-709")
	require.NoError(t, err)
	n := &node{name: name, heard: &heard{}}
	n.alloc, err = redisorbit.New(context.Background(), redisorbit.Config{
		Client: c, Node: name, Advertise: "127.0.0.1:50" + name[len(name)-1:] + "0",
		Lease: lease, Ranges: []orbit.Range{r}, Policy: orbit.Lowest,
		OnLost: func(lost []orbit.Orbit) {
			for _, o := range lost {
				_ = n.lot.Disown(o)
			}
		},
	})
	require.NoError(t, err)
	n.dir, err = New(Config{Orbits: n.alloc, HandoffKey: key})
	require.NoError(t, err)
	cfg := park.Config{Orbits: n.alloc, Cluster: n.dir}
	for _, o := range opts {
		o(&cfg)
	}
	n.lot, err = park.NewLot(cfg)
	require.NoError(t, err)
	stop := n.lot.Observe(n.heard)
	t.Cleanup(func() {
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.lot.Shutdown(ctx)
		_ = n.dir.Close()
		_ = n.alloc.Close(ctx)
		_ = c.Close()
	})
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 5*time.Millisecond, what)
}

func TestParkHereRetrieveThere(t *testing.T) {
	m := miniredis.RunT(t)
	a := startNode(t, m.Addr(), "a", 10*time.Second)
	b := startNode(t, m.Addr(), "b", 10*time.Second)
	ctx := context.Background()

	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &leg{}, Parker: "sip:bob@example.com", Party: "sip:alice@example.com"})
	require.NoError(t, err)
	o := call.Orbit()
	eventually(t, "b hears the park", func() bool {
		e, ok := b.heard.last(o)
		return ok && e.Kind == park.EventParked
	})
	info, ok := b.lot.Lookup(o)
	require.True(t, ok)
	require.Equal(t, "a", info.Node)
	require.Equal(t, call.ID(), info.ParkID)
	require.Equal(t, "sip:alice@example.com", info.Party)
	require.Equal(t, "sip:bob@example.com", info.Parker)
	require.Len(t, b.lot.Calls(), 1)
	_, ok = a.heard.last(o)
	require.False(t, ok, "a's own events are not heard back as another node's")

	_, err = b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o})
	var ee *park.ElsewhereError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, park.ElsewhereError{Orbit: o, Node: "a", Addr: "127.0.0.1:50a0"}, *ee)

	_, err = b.lot.Park(ctx, park.ParkRequest{Leg: &leg{}, Orbit: o})
	require.ErrorIs(t, err, park.ErrOrbitInUse, "a directed park to an orbit held on another node")

	_, err = a.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o})
	require.NoError(t, err)
	eventually(t, "b hears the end", func() bool {
		e, ok := b.heard.last(o)
		return ok && e.Kind == park.EventEnded && e.Outcome == park.Retrieved
	})
	_, ok = b.lot.Lookup(o)
	require.False(t, ok)
	// a's release reaches Redis within moments of its end (Release is
	// batched): until then b still finds the orbit held at a.
	eventually(t, "b finds nothing parked", func() bool {
		_, err = b.lot.Retrieve(ctx, park.RetrieveRequest{Orbit: o})
		return errors.Is(err, park.ErrNotParked)
	})
}

func TestDeadNodesCallsEndLost(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := startNode(t, m.Addr(), "a", 2*time.Second)
	b := startNode(t, m.Addr(), "b", time.Minute)
	ctx := context.Background()
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &leg{}, Parker: "sip:bob@example.com"})
	require.NoError(t, err)
	eventually(t, "b hears the park", func() bool { _, ok := b.lot.Lookup(call.Orbit()); return ok })

	// a falls silent past its lease; b's reaper drops it.
	m.SetTime(now.Add(3 * time.Second))
	eventually(t, "b hears a's call end, lost", func() bool {
		e, ok := b.heard.last(call.Orbit())
		return ok && e.Kind == park.EventEnded && e.Outcome == park.Lost
	})
	o, err := b.alloc.Allocate(ctx)
	require.NoError(t, err)
	require.Equal(t, call.Orbit(), o, "a's orbit is free again")
	require.NoError(t, b.alloc.Release(ctx, o))

	// a wakes: its orbit was taken, so its lot rings the parker back at
	// once (no Dialer here: the call is dropped) and writes nothing more
	// about that orbit.
	eventually(t, "a recalls the call it lost", func() bool {
		select {
		case <-call.Done():
			return true
		default:
			return false
		}
	})
	require.Equal(t, park.Dropped, call.Outcome())
}

func TestBadMessagesAreSkipped(t *testing.T) {
	for _, payload := range []string{``, `{`, `{"kind":"event","node":"x"}`, `{"kind":"what"}`, `{"kind":"node-down"}`, `{"kind":"node-down","node":"x","orbits":[1]}`} {
		_, err := parseMessage([]byte(payload))
		require.ErrorIs(t, err, errBadMessage, payload)
	}
	m, err := parseMessage([]byte(`{"kind":"node-down","node":"x","orbits":{}}`))
	require.NoError(t, err, "cjson writes an empty list as {}")
	require.Equal(t, "x", m.Node)
}

func errorAs(err error, target any) bool { return errors.As(err, target) }

// One run of the record script writes a whole batch, in order, fenced per
// orbit: a record for an orbit the node does not hold is neither stored
// nor told; an end (no orbit) is told whatever holds it.
func TestRecordScriptWritesABatchFenced(t *testing.T) {
	m := miniredis.RunT(t)
	a := startNode(t, m.Addr(), "a", 10*time.Second)
	ctx := context.Background()
	held, err := a.alloc.Allocate(ctx)
	require.NoError(t, err)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	sub := c.Subscribe(ctx, a.dir.channel)
	defer sub.Close()
	_, err = sub.Receive(ctx)
	require.NoError(t, err)

	require.NoError(t, a.dir.send([]write{
		{orbit: held, rec: `{"r":1}`, msg: "one"},
		{orbit: "709", rec: `{"r":2}`, msg: "not ours"},
		{msg: "an end"},
		{orbit: held, rec: `{"r":3}`},
	}))
	for _, want := range []string{"one", "an end"} {
		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		require.Equal(t, want, msg.Payload)
	}
	calls := a.dir.keys[0] + ":calls"
	got, err := c.HGet(ctx, calls, string(held)).Result()
	require.NoError(t, err)
	require.Equal(t, `{"r":3}`, got, "in order: the last write wins")
	require.False(t, c.HExists(ctx, calls, "709").Val())
}
