package orbit

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustRanges(t testing.TB, specs ...string) []Range {
	t.Helper()
	ranges := make([]Range, len(specs))
	for i, s := range specs {
		r, err := ParseRange(s)
		require.NoError(t, err)
		ranges[i] = r
	}
	return ranges
}

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// allocStep is one call in an allocator script: Allocate ("alloc") must
// return orbit; Reserve ("reserve") and Release ("release") act on orbit.
// A non-nil err is the sentinel the call must fail with.
type allocStep struct {
	op    string
	orbit Orbit
	err   error
}

func runSteps(t *testing.T, a *MemoryAllocator, steps []allocStep) {
	t.Helper()
	ctx := context.Background()
	for n, s := range steps {
		var got Orbit
		var err error
		switch s.op {
		case "alloc":
			got, err = a.Allocate(ctx)
		case "reserve":
			err = a.Reserve(ctx, s.orbit)
		case "release":
			err = a.Release(ctx, s.orbit)
		default:
			t.Fatalf("step %d: unknown op %q", n+1, s.op)
		}
		if s.err != nil {
			require.ErrorIs(t, err, s.err, "step %d: %s %s", n+1, s.op, s.orbit)
			if s.op != "alloc" {
				require.Contains(t, err.Error(), `"`+string(s.orbit)+`"`, "step %d", n+1)
			}
			continue
		}
		require.NoError(t, err, "step %d: %s %s", n+1, s.op, s.orbit)
		if s.op == "alloc" {
			require.Equal(t, s.orbit, got, "step %d: alloc", n+1)
		}
	}
}

func alloc(o Orbit) allocStep                { return allocStep{op: "alloc", orbit: o} }
func reserve(o Orbit) allocStep              { return allocStep{op: "reserve", orbit: o} }
func release(o Orbit) allocStep              { return allocStep{op: "release", orbit: o} }
func fails(s allocStep, err error) allocStep { s.err = err; return s }

func TestMemoryAllocatorPolicyOrder(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		ranges []string
		steps  []allocStep
	}{
		{
			name: "lru: never used first, in given range order, then least recently freed",
			// The star range sorts after the plain one by number but is given
			// first, so it is used first.
			policy: LeastRecentlyFreed, ranges: []string{"*7000-*7001", "701-703"},
			steps: []allocStep{
				alloc("*7000"), alloc("*7001"), alloc("701"),
				release("*7001"), release("*7000"),
				alloc("702"), alloc("703"), // never used before the freed ones
				alloc("*7001"), alloc("*7000"), // freed longest ago first
				fails(alloc(""), ErrFull),
			},
		},
		{
			name:   "lru: reuse follows release order",
			policy: LeastRecentlyFreed, ranges: []string{"701-703"},
			steps: []allocStep{
				alloc("701"), alloc("702"), alloc("703"),
				release("702"), release("701"), release("703"),
				alloc("702"), alloc("701"), alloc("703"),
			},
		},
		{
			name:   "lru: a directed park counts as a use",
			policy: LeastRecentlyFreed, ranges: []string{"701-705"},
			steps: []allocStep{
				reserve("703"), release("703"),
				alloc("701"), alloc("702"), alloc("704"), alloc("705"),
				alloc("703"), // reserved once, so queued behind the never used
			},
		},
		{
			name:   "lru: reserving the head and tail of the queue",
			policy: LeastRecentlyFreed, ranges: []string{"701-703"},
			steps: []allocStep{
				reserve("701"), reserve("703"), alloc("702"),
				fails(alloc(""), ErrFull),
				release("703"), release("701"),
				reserve("701"), alloc("703"), release("703"), release("702"),
				alloc("703"), alloc("702"),
			},
		},
		{
			name:   "lowest: first free in given range order, not by number",
			policy: Lowest, ranges: []string{"801-802", "701-702"},
			steps: []allocStep{
				alloc("801"), alloc("802"), alloc("701"),
				release("802"), release("701"),
				alloc("802"), alloc("701"), alloc("702"),
				fails(alloc(""), ErrFull),
				release("801"), alloc("801"),
			},
		},
		{
			name:   "lowest: a reserved orbit is skipped until released",
			policy: Lowest, ranges: []string{"#101-#104"},
			steps: []allocStep{
				reserve("#101"), reserve("#103"),
				alloc("#102"), alloc("#104"),
				release("#103"), alloc("#103"),
			},
		},
		{
			name:   "every policy: errors name the orbit",
			policy: Random, ranges: []string{"701-702"},
			steps: []allocStep{
				reserve("701"),
				fails(reserve("701"), ErrInUse),
				fails(reserve("703"), ErrUnknownOrbit),
				fails(reserve("*701"), ErrUnknownOrbit),
				fails(reserve("not an orbit"), ErrUnknownOrbit),
				fails(release("702"), ErrNotInUse),
				fails(release("700"), ErrUnknownOrbit),
				alloc("702"),
				fails(alloc(""), ErrFull),
				release("701"), fails(release("701"), ErrNotInUse),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewMemoryAllocator(mustRanges(t, tc.ranges...), MemoryOptions{Policy: tc.policy, Rand: seeded()})
			require.NoError(t, err)
			runSteps(t, a, tc.steps)
		})
	}
}

func TestMemoryAllocatorErrorMessages(t *testing.T) {
	for _, policy := range []Policy{LeastRecentlyFreed, Lowest, Random} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := context.Background()
			a, err := NewMemoryAllocator(mustRanges(t, "701-703"), MemoryOptions{Policy: policy})
			require.NoError(t, err)
			for range 3 {
				_, err := a.Allocate(ctx)
				require.NoError(t, err)
			}
			_, err = a.Allocate(ctx)
			require.ErrorIs(t, err, ErrFull)
			require.EqualError(t, err, "parking lot full: all 3 orbits are in use")
			require.EqualError(t, a.Reserve(ctx, "702"), `orbit "702": already in use`)
			require.EqualError(t, a.Reserve(ctx, "704"), `orbit "704": not in any range of this allocator`)
			require.NoError(t, a.Release(ctx, "702"))
			require.EqualError(t, a.Release(ctx, "702"), `orbit "702": not in use`)
		})
	}
}

// TestMemoryAllocatorEveryOrbitOnce fills the largest allocator under each
// policy: every orbit comes out exactly once, in index order except under
// Random, and the lot is then full.
func TestMemoryAllocatorEveryOrbitOnce(t *testing.T) {
	ranges := mustRanges(t, "#10000-#19999", "10000-19999", "*10000-*19999", "20000-29999", "1-9", "90000-99990")
	for _, policy := range []Policy{LeastRecentlyFreed, Lowest, Random} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := context.Background()
			a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: policy, Rand: seeded()})
			require.NoError(t, err)
			require.Equal(t, MaxPoolLen, a.Len())
			seen := make(map[Orbit]bool, a.Len())
			var want []Orbit
			for _, r := range ranges {
				for i := range r.Len() {
					want = append(want, r.At(i))
				}
			}
			var got []Orbit
			for range a.Len() {
				o, err := a.Allocate(ctx)
				require.NoError(t, err)
				require.False(t, seen[o], "orbit %s handed out twice", o)
				seen[o] = true
				got = append(got, o)
			}
			require.Equal(t, a.Len(), a.InUse())
			_, err = a.Allocate(ctx)
			require.ErrorIs(t, err, ErrFull)
			if policy == Random {
				require.NotEqual(t, want, got)
				// Every orbit exactly once (checked above) and as many as
				// there are: the same set in another order.
				require.Len(t, got, len(want))
			} else {
				require.Equal(t, want, got)
			}
		})
	}
}

// TestLowestAcrossBitmapLevels frees orbits at the edges of the 64-bit
// words and 4096-orbit subtrees of the three-level bitmap and checks they
// come back lowest first.
func TestLowestAcrossBitmapLevels(t *testing.T) {
	ctx := context.Background()
	ranges := mustRanges(t, "10000-19999", "20000-29999", "30000-39999", "40000-49999", "50000-59999")
	a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: Lowest})
	require.NoError(t, err)
	for range a.Len() {
		_, err := a.Allocate(ctx)
		require.NoError(t, err)
	}
	at := func(i int) Orbit { return ranges[i/10000].At(i % 10000) }
	freed := []int{49999, 4096, 0, 63, 4095, 64, 12345, 40000}
	for _, i := range freed {
		require.NoError(t, a.Release(ctx, at(i)))
	}
	for _, i := range []int{0, 63, 64, 4095, 4096, 12345, 40000, 49999} {
		o, err := a.Allocate(ctx)
		require.NoError(t, err)
		require.Equal(t, at(i), o)
	}
	_, err = a.Allocate(ctx)
	require.ErrorIs(t, err, ErrFull)
}

// TestRandomDistribution draws many times from a seeded Random allocator and
// checks every free orbit turns up about equally often and held orbits
// never do.
func TestRandomDistribution(t *testing.T) {
	ctx := context.Background()
	a, err := NewMemoryAllocator(mustRanges(t, "701-720"), MemoryOptions{Policy: Random, Rand: seeded()})
	require.NoError(t, err)
	held := []Orbit{"701", "705", "710", "715", "720"}
	for _, o := range held {
		require.NoError(t, a.Reserve(ctx, o))
	}
	const draws = 30000
	counts := make(map[Orbit]int)
	for range draws {
		o, err := a.Allocate(ctx)
		require.NoError(t, err)
		counts[o]++
		require.NoError(t, a.Release(ctx, o))
	}
	for _, o := range held {
		require.Zero(t, counts[o], "held orbit %s was handed out", o)
	}
	require.Len(t, counts, 15)
	// Expected 2000 each, standard deviation about 43: 1700-2300 is seven
	// deviations, so only a skewed choice fails it.
	for o, n := range counts {
		require.InDelta(t, draws/15, n, 300, "orbit %s drawn %d times", o, n)
	}
}

// TestConcurrentAllocateRelease has many goroutines allocate, reserve and
// release on a small lot under -race, and checks no orbit ever has two
// holders: each holder marks the orbit with a compare-and-swap, which fails
// if someone else already holds it.
func TestConcurrentAllocateRelease(t *testing.T) {
	for _, policy := range []Policy{LeastRecentlyFreed, Lowest, Random} {
		t.Run(policy.String(), func(t *testing.T) {
			ctx := context.Background()
			r := mustRange(t, "701-732")
			a, err := NewMemoryAllocator([]Range{r}, MemoryOptions{Policy: policy})
			require.NoError(t, err)
			holders := make([]atomic.Int32, r.Len())
			var doubleHolds, unexpected, fulls atomic.Int64
			take := func(o Orbit) {
				i, _ := r.Index(o)
				if !holders[i].CompareAndSwap(0, 1) {
					doubleHolds.Add(1)
				}
			}
			giveBack := func(o Orbit) {
				i, _ := r.Index(o)
				holders[i].Store(0) // before Release: afterwards another may take it
				if err := a.Release(ctx, o); err != nil {
					unexpected.Add(1)
				}
			}
			const workers, rounds = 16, 500
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 0))
					var mine []Orbit
					for range rounds {
						switch {
						case len(mine) > 0 && rng.IntN(2) == 0:
							j := rng.IntN(len(mine))
							giveBack(mine[j])
							mine = append(mine[:j], mine[j+1:]...)
						case rng.IntN(4) == 0:
							o := r.At(rng.IntN(r.Len()))
							switch err := a.Reserve(ctx, o); {
							case err == nil:
								take(o)
								mine = append(mine, o)
							case !errors.Is(err, ErrInUse):
								unexpected.Add(1)
							}
						default:
							o, err := a.Allocate(ctx)
							switch {
							case err == nil:
								take(o)
								mine = append(mine, o)
							case err == a.lay.errFull:
								fulls.Add(1)
							default:
								unexpected.Add(1)
							}
						}
					}
					for _, o := range mine {
						giveBack(o)
					}
				})
			}
			wg.Wait()
			require.Zero(t, doubleHolds.Load(), "orbits handed to two holders")
			require.Zero(t, unexpected.Load(), "unexpected errors")
			require.Zero(t, a.InUse())
			t.Logf("%d refusals while full", fulls.Load())
		})
	}
}

// TestAllocateReleaseDoesNotAllocate checks the steady state costs no
// memory: orbit strings are precomputed and the free structures are sized
// at construction.
func TestAllocateReleaseDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	ranges := mustRanges(t, "10000-19999", "20000-29999", "30000-39999", "40000-49999", "50000-59999")
	for _, policy := range []Policy{LeastRecentlyFreed, Lowest, Random} {
		t.Run(policy.String(), func(t *testing.T) {
			a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: policy, Rand: seeded()})
			require.NoError(t, err)
			for range a.Len() / 2 {
				_, err := a.Allocate(ctx)
				require.NoError(t, err)
			}
			// A free orbit to reserve and release on each run.
			var directed Orbit
			for i := ranges[4].Len() - 1; directed == ""; i-- {
				if o := ranges[4].At(i); a.Reserve(ctx, o) == nil {
					require.NoError(t, a.Release(ctx, o))
					directed = o
				}
			}
			allocs := testing.AllocsPerRun(1000, func() {
				_ = a.Reserve(ctx, directed)
				_ = a.Release(ctx, directed)
				o, _ := a.Allocate(ctx)
				_ = a.Release(ctx, o)
			})
			require.Zero(t, allocs)
			require.Equal(t, a.Len()/2, a.InUse())
		})
	}
}

func TestMemoryAllocatorContext(t *testing.T) {
	a, err := NewMemoryAllocator(mustRanges(t, "701-703"), MemoryOptions{})
	require.NoError(t, err)
	o, err := a.Allocate(context.Background())
	require.NoError(t, err)

	done, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = a.Allocate(done)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, a.Reserve(done, "702"), context.Canceled)
	require.Equal(t, 1, a.InUse(), "a done context takes nothing")
	require.NoError(t, a.Release(done, o), "a release is never lost to a done context")
	require.Zero(t, a.InUse())
}

func TestNewMemoryAllocatorRejects(t *testing.T) {
	big := mustRanges(t, "10000-19999", "20000-29999", "30000-39999", "40000-49999", "50000-59999")
	tests := []struct {
		name    string
		ranges  []Range
		opts    MemoryOptions
		rule    error
		mention string
	}{
		{"no ranges", nil, MemoryOptions{}, ErrNoRanges, "the allocator was given none"},
		{"zero range", []Range{mustRange(t, "701-799"), {}}, MemoryOptions{}, ErrSyntax, "range 2 is the zero Range"},
		{"overlap", mustRanges(t, "701-799", "801-899", "799-801"), MemoryOptions{}, ErrOverlap,
			`orbit range "799-801": ranges overlap (with 701-799)`},
		{"50,001 orbits", append(big, mustRange(t, "60000")), MemoryOptions{}, ErrPoolTooLarge, "50001 orbits"},
		{"unknown policy", mustRanges(t, "701-799"), MemoryOptions{Policy: 3}, ErrUnknownPolicy, `orbit policy "Policy(3)"`},
		{"negative policy", mustRanges(t, "701-799"), MemoryOptions{Policy: -1}, ErrUnknownPolicy, "Policy(-1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewMemoryAllocator(tc.ranges, tc.opts)
			requireRule(t, err, tc.rule, tc.mention)
			require.Nil(t, a)
		})
	}
	a, err := NewMemoryAllocator(big, MemoryOptions{})
	require.NoError(t, err, "50,000 orbits is the limit, not over it")
	require.Equal(t, 50000, a.Len())
}

func TestMemoryAllocatorAccessors(t *testing.T) {
	ranges := mustRanges(t, "*7000-*7099", "701-799")
	a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: Lowest})
	require.NoError(t, err)
	require.Equal(t, 199, a.Len())
	require.Equal(t, Lowest, a.Policy())
	require.Equal(t, ranges, a.Ranges())
	require.True(t, a.Contains("*7000"))
	require.True(t, a.Contains("799"))
	require.False(t, a.Contains("7000"))
	require.False(t, a.Contains("800"))
	_, err = a.Allocate(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, a.InUse())
}

func TestNewMemoryAllocatorFromTable(t *testing.T) {
	table, err := ParseTable("nodeA=701-799,nodeB=801-899,nodeA=*7000-*7009,950-959")
	require.NoError(t, err)
	a, err := NewMemoryAllocatorFromTable(table, "nodeA", MemoryOptions{Policy: Lowest})
	require.NoError(t, err)
	require.Equal(t, 109, a.Len())
	require.Equal(t, mustRanges(t, "701-799", "*7000-*7009"), a.Ranges())
	local, err := NewMemoryAllocatorFromTable(table, "", MemoryOptions{})
	require.NoError(t, err)
	require.Equal(t, 10, local.Len())

	_, err = NewMemoryAllocatorFromTable(table, "nodeC", MemoryOptions{})
	requireRule(t, err, ErrNoRanges, `orbit pool "nodeC": no orbit ranges`)
	_, err = NewMemoryAllocatorFromTable(nil, "", MemoryOptions{})
	requireRule(t, err, ErrNoRanges, "the table is nil")
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in   string
		want Policy
		ok   bool
	}{
		{"lru", LeastRecentlyFreed, true},
		{"lowest", Lowest, true},
		{"random", Random, true},
		{"", 0, false},
		{"LRU", 0, false},
		{"fifo", 0, false},
		{" lru", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePolicy(tc.in)
			if !tc.ok {
				requireRule(t, err, ErrUnknownPolicy, `orbit policy "`+tc.in+`"`)
				var viaText Policy
				require.ErrorIs(t, viaText.UnmarshalText([]byte(tc.in)), ErrUnknownPolicy)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, p)
			require.Equal(t, tc.in, p.String())
			text, err := p.MarshalText()
			require.NoError(t, err)
			require.Equal(t, tc.in, string(text))
			var viaText Policy
			require.NoError(t, viaText.UnmarshalText(text))
			require.Equal(t, tc.want, viaText)
		})
	}
	require.Equal(t, "Policy(7)", Policy(7).String())
	_, err := Policy(7).MarshalText()
	require.ErrorIs(t, err, ErrUnknownPolicy)
}

// allocModel is the obvious, slow allocator each policy must agree with: a
// queue of free orbits for LRU, a scan of all orbits for Lowest.
type allocModel struct {
	policy Policy
	orbits []Orbit
	free   map[Orbit]bool
	queue  []Orbit // LRU order of the free orbits
	inUse  int
}

func newAllocModel(policy Policy, ranges []Range) *allocModel {
	m := &allocModel{policy: policy, free: make(map[Orbit]bool)}
	for _, r := range ranges {
		for i := range r.Len() {
			o := r.At(i)
			m.orbits = append(m.orbits, o)
			m.free[o] = true
			m.queue = append(m.queue, o)
		}
	}
	return m
}

// next returns the orbit Allocate must return, or "" if the lot is full.
func (m *allocModel) next() Orbit {
	if m.policy == LeastRecentlyFreed {
		if len(m.queue) == 0 {
			return ""
		}
		return m.queue[0]
	}
	for _, o := range m.orbits {
		if m.free[o] {
			return o
		}
	}
	return ""
}

func (m *allocModel) take(o Orbit) {
	m.free[o] = false
	m.inUse++
	for i, q := range m.queue {
		if q == o {
			m.queue = append(m.queue[:i], m.queue[i+1:]...)
			break
		}
	}
}

func (m *allocModel) give(o Orbit) {
	m.free[o] = true
	m.inUse--
	m.queue = append(m.queue, o)
}

// TestMemoryAllocatorMatchesModel runs random allocate, reserve and release
// sequences against the model, at sizes around the 64-orbit words and
// 4096-orbit subtrees of the Lowest bitmap.
func TestMemoryAllocatorMatchesModel(t *testing.T) {
	sizes := [][]string{{"5"}, {"101-163"}, {"101-164"}, {"101-165"}, {"#201-#260", "101-170"}, {"1000-5096"}}
	for _, policy := range []Policy{LeastRecentlyFreed, Lowest, Random} {
		for _, specs := range sizes {
			t.Run(policy.String()+"/"+strings.Join(specs, ","), func(t *testing.T) {
				ctx := context.Background()
				ranges := mustRanges(t, specs...)
				a, err := NewMemoryAllocator(ranges, MemoryOptions{Policy: policy, Rand: seeded()})
				require.NoError(t, err)
				m := newAllocModel(policy, ranges)
				rng := rand.New(rand.NewPCG(5, 6))
				for step := range 20000 {
					o := m.orbits[rng.IntN(len(m.orbits))]
					switch rng.IntN(3) {
					case 0:
						got, err := a.Allocate(ctx)
						want := m.next()
						if want == "" {
							require.ErrorIs(t, err, ErrFull, "step %d", step)
							continue
						}
						require.NoError(t, err, "step %d", step)
						if policy == Random {
							require.True(t, m.free[got], "step %d: %s was not free", step, got)
						} else {
							require.Equal(t, want, got, "step %d", step)
						}
						m.take(got)
					case 1:
						err := a.Reserve(ctx, o)
						if !m.free[o] {
							require.ErrorIs(t, err, ErrInUse, "step %d", step)
							continue
						}
						require.NoError(t, err, "step %d", step)
						m.take(o)
					default:
						err := a.Release(ctx, o)
						if m.free[o] {
							require.ErrorIs(t, err, ErrNotInUse, "step %d", step)
							continue
						}
						require.NoError(t, err, "step %d", step)
						m.give(o)
					}
					require.Equal(t, m.inUse, a.InUse(), "step %d", step)
				}
			})
		}
	}
}

func TestSetRangesKeepsWhatIsInUse(t *testing.T) {
	ctx := context.Background()
	a, err := NewMemoryAllocator([]Range{mustRange(t, "701-705")}, MemoryOptions{Policy: Lowest})
	require.NoError(t, err)
	require.NoError(t, a.Reserve(ctx, "702"))
	require.NoError(t, a.Reserve(ctx, "704"))

	require.NoError(t, a.SetRanges([]Range{mustRange(t, "703-710")}))
	require.Equal(t, []Range{mustRange(t, "703-710")}, a.Ranges())
	require.Equal(t, 8, a.Len())
	require.Equal(t, 2, a.InUse(), "both calls still hold their orbits")
	require.ErrorIs(t, a.Reserve(ctx, "704"), ErrInUse, "kept, and still in use")
	require.ErrorIs(t, a.Reserve(ctx, "702"), ErrInUse, "its range is gone, its call is not")
	require.False(t, a.Contains("702"))
	o, err := a.Allocate(ctx)
	require.NoError(t, err)
	require.Equal(t, Orbit("703"), o)

	require.NoError(t, a.Release(ctx, "702"), "the call in the removed range ends")
	require.ErrorIs(t, a.Release(ctx, "702"), ErrUnknownOrbit, "and its orbit is gone for good")
	require.ErrorIs(t, a.Reserve(ctx, "702"), ErrUnknownOrbit)
	require.Equal(t, 2, a.InUse())

	require.Error(t, a.SetRanges(nil))
	require.Error(t, a.SetRanges([]Range{mustRange(t, "701-709"), mustRange(t, "705-706")}), "overlap")
	require.Equal(t, []Range{mustRange(t, "703-710")}, a.Ranges(), "a refused change changes nothing")
}

func TestSetRangesBringsBackARetiredOrbit(t *testing.T) {
	ctx := context.Background()
	a, err := NewMemoryAllocator([]Range{mustRange(t, "701-705")}, MemoryOptions{})
	require.NoError(t, err)
	require.NoError(t, a.Reserve(ctx, "701"))
	require.NoError(t, a.SetRanges([]Range{mustRange(t, "702-705")}))
	require.NoError(t, a.SetRanges([]Range{mustRange(t, "701-705")}))
	require.ErrorIs(t, a.Reserve(ctx, "701"), ErrInUse, "back in range, still in use")
	require.NoError(t, a.Release(ctx, "701"))
	require.NoError(t, a.Reserve(ctx, "701"))
}

func TestSetRangesKeepsTheLRUOrder(t *testing.T) {
	ctx := context.Background()
	a, err := NewMemoryAllocator([]Range{mustRange(t, "701-703")}, MemoryOptions{})
	require.NoError(t, err)
	for range 3 {
		_, err := a.Allocate(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, a.Release(ctx, "702"))
	require.NoError(t, a.Release(ctx, "701"))
	require.NoError(t, a.SetRanges([]Range{mustRange(t, "701-704")}))
	var got []Orbit
	for range 3 {
		o, err := a.Allocate(ctx)
		require.NoError(t, err)
		got = append(got, o)
	}
	require.Equal(t, []Orbit{"704", "702", "701"}, got, "the new orbit as never used, then the freed ones in their order")
}

func TestSetRangesWhileAllocating(t *testing.T) {
	ctx := context.Background()
	a, err := NewMemoryAllocator([]Range{mustRange(t, "100-199")}, MemoryOptions{})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for range 500 {
				o, err := a.Allocate(ctx)
				if err != nil {
					continue
				}
				if err := a.Release(ctx, o); err != nil {
					t.Errorf("worker %d: release %s: %v", w, o, err)
					return
				}
			}
		})
	}
	for i := range 50 {
		spec := "100-199"
		if i%2 == 1 {
			spec = "150-249"
		}
		require.NoError(t, a.SetRanges([]Range{mustRange(t, spec)}))
	}
	wg.Wait()
	require.Zero(t, a.InUse(), "every orbit taken was given back, whatever the ranges")
}
