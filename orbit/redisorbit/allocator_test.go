package redisorbit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// lot is one Redis (miniredis: fast, its clock set by the test) shared by
// the nodes a test starts.
type lot struct {
	t   *testing.T
	m   *miniredis.Miniredis
	now time.Time
}

func newLot(t *testing.T) *lot {
	t.Helper()
	m := miniredis.RunT(t)
	l := &lot{t: t, m: m, now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	m.SetTime(l.now)
	return l
}

// advance moves Redis' clock, the only one leases are measured by.
func (l *lot) advance(d time.Duration) {
	l.now = l.now.Add(d)
	l.m.SetTime(l.now)
}

func (l *lot) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: l.m.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	l.t.Cleanup(func() { _ = c.Close() })
	return c
}

// node joins the lot as name with cfg's other fields (ranges default to
// 701-705, policy lowest).
func (l *lot) node(name string, cfg Config) *Allocator {
	l.t.Helper()
	a, err := l.start(name, cfg)
	require.NoError(l.t, err)
	l.t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func (l *lot) start(name string, cfg Config) (*Allocator, error) {
	cfg.Node = name
	if cfg.Client == nil {
		cfg.Client = l.client()
	}
	if cfg.Ranges == nil {
		cfg.Ranges = ranges(l.t, "701-705")
	}
	if cfg.Policy == 0 && cfg.Lease == 0 {
		cfg.Policy = orbit.Lowest
	}
	return New(context.Background(), cfg)
}

func ranges(t *testing.T, specs ...string) []orbit.Range {
	t.Helper()
	var out []orbit.Range
	for _, s := range specs {
		r, err := orbit.ParseRange(s)
		require.NoError(t, err)
		out = append(out, r)
	}
	return out
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestTwoNodesNeverShareAnOrbit(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{})
	b := l.node("b", Config{})
	var got []orbit.Orbit
	for i := range 5 {
		n := a
		if i%2 == 1 {
			n = b
		}
		o, err := n.Allocate(ctx(t))
		require.NoError(t, err)
		got = append(got, o)
	}
	require.Equal(t, []orbit.Orbit{"701", "702", "703", "704", "705"}, got, "lowest first, across nodes")
	_, err := a.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrFull)

	released(t, b, "702")
	o, err := a.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("702"), o)
}

func TestLeastRecentlyFreedAcrossNodes(t *testing.T) {
	l := newLot(t)
	cfg := Config{Policy: orbit.LeastRecentlyFreed, Lease: DefaultLease}
	a := l.node("a", cfg)
	b := l.node("b", cfg)
	for _, want := range []orbit.Orbit{"701", "702", "703"} {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		require.Equal(t, want, o, "never-used orbits first, in order")
	}
	released(t, a, "702")
	l.advance(time.Second)
	released(t, a, "701")
	for _, want := range []orbit.Orbit{"704", "705", "702", "701"} {
		o, err := b.Allocate(ctx(t))
		require.NoError(t, err)
		require.Equal(t, want, o, "then the orbit freed longest ago, whoever freed it")
	}
}

func TestRandomPolicy(t *testing.T) {
	l := newLot(t)
	cfg := Config{Policy: orbit.Random, Ranges: ranges(t, "701-799")}
	a := l.node("a", cfg)
	seen := map[orbit.Orbit]bool{}
	for range 99 {
		o, err := a.Allocate(ctx(t))
		require.NoError(t, err)
		require.False(t, seen[o], "orbit %s handed out twice", o)
		seen[o] = true
	}
	_, err := a.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrFull)
}

func TestConcurrentClaimsOneWinner(t *testing.T) {
	l := newLot(t)
	cfg := Config{Ranges: ranges(t, "701-799", "*7101-*7199")}
	nodes := []*Allocator{l.node("a", cfg), l.node("b", cfg), l.node("c", cfg)}
	var (
		mu  sync.Mutex
		got = map[orbit.Orbit]string{}
		wg  sync.WaitGroup
	)
	for i, n := range nodes {
		for range 4 {
			wg.Go(func() {
				for {
					o, err := n.Allocate(context.Background())
					if errors.Is(err, orbit.ErrFull) {
						return
					}
					if !assertNoError(t, err) {
						return
					}
					mu.Lock()
					if prev, dup := got[o]; dup {
						t.Errorf("orbit %s claimed by %s and node %d", o, prev, i)
					}
					got[o] = n.Node()
					mu.Unlock()
				}
			})
		}
	}
	// Directed parks racing for one orbit: exactly one wins.
	l2 := newLot(t)
	racers := []*Allocator{l2.node("a", Config{}), l2.node("b", Config{}), l2.node("c", Config{})}
	wins := make(chan string, len(racers)*3)
	for _, n := range racers {
		for range 3 {
			wg.Go(func() {
				err := n.Reserve(context.Background(), "703")
				if err == nil {
					wins <- n.Node()
					return
				}
				if !errors.Is(err, orbit.ErrInUse) {
					t.Errorf("reserve: %v", err)
				}
			})
		}
	}
	wg.Wait()
	close(wins)
	require.Len(t, got, 198, "every orbit once")
	require.Len(t, slices.Collect(chanValues(wins)), 1, "one directed park wins")
}

func assertNoError(t *testing.T, err error) bool {
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

func chanValues[T any](c <-chan T) func(func(T) bool) {
	return func(yield func(T) bool) {
		for v := range c {
			if !yield(v) {
				return
			}
		}
	}
}

func TestReserveAndRelease(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{})
	b := l.node("b", Config{})
	require.NoError(t, a.Reserve(ctx(t), "704"))
	require.ErrorIs(t, b.Reserve(ctx(t), "704"), orbit.ErrInUse, "held on another node")
	require.ErrorIs(t, b.Reserve(ctx(t), "801"), orbit.ErrUnknownOrbit)
	require.ErrorIs(t, b.Release(ctx(t), "704"), orbit.ErrNotInUse, "a node frees only its own")
	require.ErrorIs(t, a.Release(ctx(t), "801"), orbit.ErrUnknownOrbit)
	released(t, a, "704")
	require.ErrorIs(t, a.Release(ctx(t), "704"), orbit.ErrNotInUse, "released twice")
	require.NoError(t, b.Reserve(ctx(t), "704"))

	// A directed park here into an orbit released here a moment ago takes
	// it back without waiting for Redis.
	require.NoError(t, a.Reserve(ctx(t), "705"))
	require.NoError(t, a.Release(ctx(t), "705"))
	require.NoError(t, a.Reserve(ctx(t), "705"))
	require.ErrorIs(t, b.Reserve(ctx(t), "705"), orbit.ErrInUse)
}

func TestHolder(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Advertise: "10.0.0.1:5060"})
	b := l.node("b", Config{})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	node, adv, ok, err := b.Holder(ctx(t), "701")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", node)
	require.Equal(t, "10.0.0.1:5060", adv)
	_, _, ok, err = b.Holder(ctx(t), "702")
	require.NoError(t, err)
	require.False(t, ok, "free")
}

func TestMismatchRefused(t *testing.T) {
	l := newLot(t)
	l.node("a", Config{})
	_, err := l.start("b", Config{Ranges: ranges(t, "701-799")})
	var me *MismatchError
	require.ErrorAs(t, err, &me)
	require.Equal(t, "orbits", me.Field)
	require.Equal(t, "701-705", me.Theirs)
	require.Equal(t, "701-799", me.Ours)
	require.ErrorIs(t, err, ErrMismatch)
	require.Contains(t, err.Error(), `"701-705"`)
	require.Contains(t, err.Error(), `"701-799"`)

	_, err = l.start("b", Config{Policy: orbit.Random})
	require.ErrorAs(t, err, &me)
	require.Equal(t, "policy", me.Field)
}

func TestConfigErrors(t *testing.T) {
	l := newLot(t)
	c := l.client()
	tests := []struct {
		field string
		cfg   Config
	}{
		{"Client", Config{Node: "a"}},
		{"Node", Config{Client: c}},
		{"Node", Config{Client: c, Node: "a b"}},
		{"Cluster", Config{Client: c, Node: "a", Cluster: "x}y"}},
		{"Lease", Config{Client: c, Node: "a", Lease: time.Second}},
		{"Lease", Config{Client: c, Node: "a", Lease: time.Hour}},
		{"Ranges", Config{Client: c, Node: "a", Lease: DefaultLease}},
	}
	for _, tt := range tests {
		_, err := New(ctx(t), tt.cfg)
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, tt.field)
		require.Equal(t, tt.field, ce.Field)
		require.ErrorIs(t, err, ErrInvalidConfig)
	}
}

func TestDeadNodeOrbitsFreedAfterLease(t *testing.T) {
	l := newLot(t)
	lost := make(chan []orbit.Orbit, 4)
	cfg := Config{Lease: 2 * time.Second, Policy: orbit.Lowest, OnLost: func(o []orbit.Orbit) { lost <- o }}
	a := l.node("a", cfg)
	b := l.node("b", Config{Lease: time.Minute, Policy: orbit.Lowest})
	for range 2 {
		_, err := a.Allocate(ctx(t))
		require.NoError(t, err)
	}
	sub := l.client().Subscribe(ctx(t), "{callpark:callpark}:events")
	defer sub.Close()
	_, err := sub.Receive(ctx(t))
	require.NoError(t, err)

	// a falls silent (its clock stops, as under SIGSTOP): past its lease,
	// b's reaper (every half second) frees a's orbits and says so.
	l.advance(2*time.Second + time.Millisecond)
	msg, err := sub.ReceiveMessage(ctx(t))
	require.NoError(t, err)
	require.Contains(t, msg.Payload, `"node-down"`)
	require.Contains(t, msg.Payload, `"701"`)
	o, err := b.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), o, "a's orbits are free again")

	// a wakes up: its next renewal finds it fenced; it is told what it
	// lost and joins again with a new epoch.
	epoch := epochOf(a)
	select {
	case got := <-lost:
		require.ElementsMatch(t, []orbit.Orbit{"701", "702"}, got)
	case <-time.After(5 * time.Second):
		t.Fatal("OnLost not called")
	}
	require.Eventually(t, func() bool { e := epochOf(a); return e != "" && e != epoch }, 5*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, a.Release(ctx(t), "702"), orbit.ErrNotInUse, "no longer a's")
	o, err = a.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("702"), o)
}

func TestRestartUnderSameNameFreesOldOrbits(t *testing.T) {
	l := newLot(t)
	lost := make(chan []orbit.Orbit, 1)
	old := l.node("a", Config{Policy: orbit.Lowest, Lease: DefaultLease, OnLost: func(o []orbit.Orbit) { lost <- o }})
	require.NoError(t, old.Reserve(ctx(t), "703"))
	again := l.node("a", Config{})
	require.NotEqual(t, epochOf(old), epochOf(again))
	require.NoError(t, again.Reserve(ctx(t), "703"), "the new incarnation does not inherit, the orbit is free")
	_, err := old.Allocate(ctx(t))
	require.NoError(t, err, "the old one is fenced, rejoins, and claims anew")
	require.Equal(t, []orbit.Orbit{"703"}, <-lost)
}

func TestRedisEmptiedNodesReassert(t *testing.T) {
	l := newLot(t)
	lostA := make(chan []orbit.Orbit, 1)
	a := l.node("a", Config{Policy: orbit.Lowest, Lease: 2 * time.Second, OnLost: func(o []orbit.Orbit) { lostA <- o }})
	b := l.node("b", Config{Policy: orbit.Lowest, Lease: 2 * time.Second})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	require.NoError(t, a.Reserve(ctx(t), "702"))

	l.m.FlushAll() // Redis restarted with nothing saved
	// a's renewal recreates the lot and claims its orbits back; until the
	// lot has settled (one lease) nobody else may claim.
	require.Eventually(t, func() bool {
		node, _, ok, err := b.Holder(ctx(t), "702")
		return err == nil && ok && node == "a"
	}, 5*time.Second, 10*time.Millisecond)
	_, err := b.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrUnavailable, "settling")
	require.ErrorIs(t, b.Reserve(ctx(t), "703"), orbit.ErrUnavailable, "settling")

	// The lot settles for one lease; renewals keep both nodes alive.
	for range 2 {
		l.advance(time.Second + time.Millisecond)
		require.NoError(t, a.renew(ctx(t)))
		require.NoError(t, b.renew(ctx(t)))
	}
	o, err := b.Allocate(ctx(t))
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("703"), o, "701 and 702 are still a's")
	require.NoError(t, a.Release(ctx(t), "701"))
	select {
	case got := <-lostA:
		t.Fatalf("a lost %v", got)
	default:
	}
}

func TestReassertLosesWhatAnotherTookFirst(t *testing.T) {
	l := newLot(t)
	lost := make(chan []orbit.Orbit, 1)
	a := l.node("a", Config{Policy: orbit.Lowest, Lease: DefaultLease, OnLost: func(o []orbit.Orbit) { lost <- o }})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	require.NoError(t, a.Reserve(ctx(t), "702"))
	l.m.FlushAll()
	// b (new, knowing no earlier lot) recreates it without a settle window
	// and takes 701 before a notices.
	b := l.node("b", Config{})
	require.NoError(t, b.Reserve(ctx(t), "701"))
	require.NoError(t, a.renew(ctx(t)))
	require.Equal(t, []orbit.Orbit{"701"}, <-lost)
	node, _, ok, err := b.Holder(ctx(t), "702")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "a", node, "702 is a's again")
}

func TestCloseLeavesAtOnce(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{})
	b := l.node("b", Config{})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	require.NoError(t, a.Close(ctx(t)))
	require.NoError(t, a.Close(ctx(t)), "idempotent")
	require.NoError(t, b.Reserve(ctx(t), "701"), "freed by the leave, not after the lease")
	_, err := a.Allocate(ctx(t))
	require.ErrorIs(t, err, ErrClosed)
	require.False(t, l.m.Exists("{callpark:callpark}:node:a"), "a is gone")
}

func TestRedisUnreachable(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	addr := l.m.Addr()
	l.m.Close()
	_, err := a.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrUnavailable)
	require.ErrorIs(t, a.Reserve(ctx(t), "702"), orbit.ErrUnavailable)
	require.NoError(t, a.Release(ctx(t), "701"), "queued: retried until Redis answers")
	require.ErrorIs(t, a.flushReleases(ctx(t)), orbit.ErrUnavailable)

	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	_, err = New(ctx(t), Config{Client: c, Node: "b", Ranges: ranges(t, "701-705")})
	require.ErrorIs(t, err, orbit.ErrUnavailable)
}

func epochOf(a *Allocator) string {
	e, _ := a.Incarnation()
	return e
}

func TestReleaseWhileUnreachableIsRetried(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Policy: orbit.Lowest, Lease: 2 * time.Second})
	b := l.node("b", Config{Policy: orbit.Lowest, Lease: time.Minute})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	l.m.SetError("LOADING") // every command fails, as while Redis is away
	require.NoError(t, a.Release(ctx(t), "701"))
	require.Error(t, a.flushReleases(ctx(t)))
	l.m.SetError("")
	require.Eventually(t, func() bool { return b.Reserve(ctx(t), "701") == nil }, 5*time.Second, 20*time.Millisecond,
		"the release goes through once Redis answers")
}

func TestCheckTable(t *testing.T) {
	l := newLot(t)
	cfg := Config{Client: l.client(), Ranges: ranges(t, "701-705"), Policy: orbit.Lowest}
	require.NoError(t, CheckTable(ctx(t), cfg), "no table yet: the first node stores it")
	l.node("a", Config{})
	require.NoError(t, CheckTable(ctx(t), cfg))
	cfg.Ranges = ranges(t, "701-799")
	var me *MismatchError
	require.ErrorAs(t, CheckTable(ctx(t), cfg), &me)
	require.Equal(t, "orbits", me.Field)
	require.False(t, l.m.Exists("{callpark:callpark}:node:check"), "checking joins nothing")
	addr := l.m.Addr()
	l.m.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	require.ErrorIs(t, CheckTable(ctx(t), Config{Client: c, Ranges: ranges(t, "701-705")}), orbit.ErrUnavailable)
}

// released releases o and waits until Redis has it (Release returns before).
func released(t *testing.T, a *Allocator, o orbit.Orbit) {
	t.Helper()
	require.NoError(t, a.Release(ctx(t), o))
	require.NoError(t, a.flushReleases(ctx(t)))
}

func TestPeers(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Advertise: "10.0.0.1:5060"})
	l.node("b", Config{Advertise: "10.0.0.2:5060"})
	peers, err := a.Peers(ctx(t))
	require.NoError(t, err)
	require.ElementsMatch(t, []Peer{{"a", "10.0.0.1:5060"}, {"b", "10.0.0.2:5060"}}, peers)
}

// Redis away longer than every lease (its clock jumps with no script run
// meanwhile): that is nobody's death, so nobody is reaped or fenced.
func TestRedisAwayIsNoNodesDeath(t *testing.T) {
	l := newLot(t)
	lost := make(chan []orbit.Orbit, 1)
	a := l.node("a", Config{Policy: orbit.Lowest, Lease: 2 * time.Second, OnLost: func(o []orbit.Orbit) { lost <- o }})
	b := l.node("b", Config{Policy: orbit.Lowest, Lease: 2 * time.Second})
	require.NoError(t, a.Reserve(ctx(t), "701"))
	l.advance(10 * time.Second)
	require.NoError(t, b.renew(ctx(t)))
	require.NoError(t, a.renew(ctx(t)))
	require.ErrorIs(t, b.Reserve(ctx(t), "701"), orbit.ErrInUse, "still a's")
	select {
	case o := <-lost:
		t.Fatalf("a lost %v", o)
	default:
	}
}
