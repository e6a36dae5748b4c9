package orbit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
)

// MemoryOptions configures a [MemoryAllocator]. The zero value gives the
// default: least recently freed.
type MemoryOptions struct {
	// Policy chooses the orbit Allocate takes; the zero value is
	// [LeastRecentlyFreed].
	Policy Policy
	// Rand is the source for the [Random] policy; nil means one seeded at
	// random. Tests pass a seeded source to get a repeatable order. The
	// allocator calls it under its own lock, so the caller must not use it
	// concurrently afterwards.
	Rand *rand.Rand
}

// MemoryAllocator is the in-process [Allocator] for one park server: the
// default when a single node serves its pool. Every call is O(1) in the
// number of orbits (at most [MaxPoolLen]); only the number of ranges adds a
// binary search. Once built, it allocates no memory on success: the orbit
// strings are built once at construction. It is safe for concurrent use.
type MemoryAllocator struct {
	policy Policy
	rng    *rand.Rand

	mu      sync.Mutex
	lay     *memoryLayout // replaced whole by SetRanges
	used    int
	free    freeSet // also the record of which orbits are in use
	retired map[Orbit]struct{}
}

// memoryLayout is what an allocator knows of its ranges, built once per
// set of ranges.
type memoryLayout struct {
	ranges  []Range
	index   rangeIndex
	text    orbitText
	errFull error // built once, so a full lot costs no allocation per refusal
}

func newMemoryLayout(ranges []Range) (*memoryLayout, error) {
	if len(ranges) == 0 {
		return nil, &RuleError{Subject: "orbit pool", Value: "", Rule: ErrNoRanges, Detail: "the allocator was given none"}
	}
	index, err := newRangeIndex(ranges)
	if err != nil {
		return nil, err
	}
	if err := checkPoolLen("", index.total); err != nil {
		return nil, err
	}
	return &memoryLayout{
		ranges:  slices.Clone(ranges),
		index:   index,
		text:    newOrbitText(ranges),
		errFull: fmt.Errorf("%w: all %d orbits are in use", ErrFull, index.total),
	}, nil
}

// NewMemoryAllocator returns an allocator over ranges, all free, ordered as
// given and ascending within each range (the order [Lowest] and the
// never-used phase of [LeastRecentlyFreed] follow). Like a [Table] pool, it
// rejects no ranges, a zero Range, overlapping ranges and more than
// [MaxPoolLen] orbits in all; it also rejects an unknown policy.
func NewMemoryAllocator(ranges []Range, opts MemoryOptions) (*MemoryAllocator, error) {
	if len(ranges) == 0 {
		return nil, &RuleError{Subject: "orbit pool", Value: "", Rule: ErrNoRanges, Detail: "the allocator was given none"}
	}
	if !opts.Policy.valid() {
		return nil, &RuleError{Subject: "orbit policy", Value: opts.Policy.String(), Rule: ErrUnknownPolicy}
	}
	lay, err := newMemoryLayout(ranges)
	if err != nil {
		return nil, err
	}
	rng := opts.Rand
	if rng == nil && opts.Policy == Random {
		rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return &MemoryAllocator{
		policy: opts.Policy,
		rng:    rng,
		lay:    lay,
		free:   newFreeSet(opts.Policy, lay.index.total, rng),
	}, nil
}

// SetRanges replaces the allocator's ranges while calls are parked (a
// reload of the orbit ranges), with the checks of NewMemoryAllocator. An
// orbit in use that the new ranges keep stays in use; one they drop stays
// held, though in no range, until Release frees it for good: a call parked
// in a range that was removed stays until it ends. Under
// [LeastRecentlyFreed] the free orbits the new ranges keep are handed out
// in the order they were due; orbits the new ranges add come first, as
// never used.
func (a *MemoryAllocator) SetRanges(ranges []Range) error {
	lay, err := newMemoryLayout(ranges)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old, oldFree := a.lay, a.free
	free := newFreeSet(a.policy, lay.index.total, a.rng)
	retired := map[Orbit]struct{}{}
	for i := range old.index.total {
		if oldFree.isFree(i) {
			continue
		}
		o := old.text.at(i)
		if _, j, ok := lay.index.find(o); ok {
			free.remove(j)
		} else {
			retired[o] = struct{}{}
		}
	}
	for o := range a.retired {
		if _, j, ok := lay.index.find(o); ok {
			free.remove(j) // its range is back: still in use
		} else {
			retired[o] = struct{}{}
		}
	}
	if lru, ok := oldFree.(*lruFree); ok {
		// Move the kept free orbits to the back in their old order.
		for i := lru.head; i != noSlot; i = lru.links[i].next {
			if _, j, ok := lay.index.find(old.text.at(int(i))); ok {
				free.remove(j)
				free.add(j)
			}
		}
	}
	a.lay, a.free, a.retired = lay, free, retired
	return nil
}

// orbitText holds the text of every orbit in one string, so Allocate hands
// out a substring (no allocation) and the allocator keeps no per-orbit
// array of string headers, which at 50,000 orbits would be 800 KB of cache
// misses. All orbits of a range have the same length, so an orbit's place in
// the string follows from its range.
type orbitText struct {
	all  string
	runs []textRun // one per range, in the order given
}

// textRun places one range's orbits in orbitText.all.
type textRun struct {
	first int // index of the range's first orbit
	start int // byte offset of its text
	size  int // bytes per orbit: prefix and digits
}

func newOrbitText(ranges []Range) orbitText {
	var all []byte
	runs := make([]textRun, len(ranges))
	first := 0
	for k, r := range ranges {
		runs[k] = textRun{first: first, start: len(all), size: len(prefixString(r.prefix)) + int(r.width)}
		for v := uint64(r.first); v <= uint64(r.last); v++ {
			all = append(all, prefixString(r.prefix)...)
			all = strconv.AppendUint(all, v, 10)
		}
		first += r.Len()
	}
	return orbitText{all: string(all), runs: runs}
}

// at returns orbit i, searching the ranges (not the orbits) for its run.
func (t *orbitText) at(i int) Orbit {
	// Branch-free binary search for the last run starting at or below i,
	// as in rangeIndex.find; runs[0].first is 0, so one always exists.
	base, n := 0, len(t.runs)
	for n > 1 {
		half := n / 2
		if t.runs[base+half].first <= i {
			base += half
		}
		n -= half
	}
	run := t.runs[base]
	start := run.start + (i-run.first)*run.size
	return Orbit(t.all[start : start+run.size])
}

// NewMemoryAllocatorFromTable returns an allocator over the ranges that t
// assigns to pool ("" for the local pool), in the table's order. A pool with
// no range in t is an [ErrNoRanges] error naming the pool.
func NewMemoryAllocatorFromTable(t *Table, pool string, opts MemoryOptions) (*MemoryAllocator, error) {
	if t == nil {
		return nil, &RuleError{Subject: "orbit pool", Value: pool, Rule: ErrNoRanges, Detail: "the table is nil"}
	}
	ranges := t.Ranges(pool)
	if len(ranges) == 0 {
		return nil, &RuleError{Subject: "orbit pool", Value: pool, Rule: ErrNoRanges, Detail: "no range of the table is served by this pool"}
	}
	return NewMemoryAllocator(ranges, opts)
}

// Allocate takes a free orbit chosen by the policy. It returns an error
// wrapping [ErrFull], which says how many orbits the lot has, when none is
// free, and ctx.Err() without taking anything if ctx is already done: the
// park request that wanted the orbit has been abandoned.
func (a *MemoryAllocator) Allocate(ctx context.Context) (Orbit, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.free.take()
	if i < 0 {
		return "", a.lay.errFull
	}
	a.used++
	return a.lay.text.at(i), nil
}

// Reserve takes exactly o, for a directed park. It returns an error wrapping
// [ErrInUse] if o holds a call, [ErrUnknownOrbit] if o is in none of the
// allocator's ranges, and ctx.Err() without taking anything if ctx is
// already done. Under [LeastRecentlyFreed] a reserved orbit counts as used:
// once released it waits at the back of the queue like any other.
func (a *MemoryAllocator) Reserve(ctx context.Context, o Orbit) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, i, ok := a.lay.index.find(o)
	if !ok {
		if _, held := a.retired[o]; held {
			return fmt.Errorf("orbit %q: %w", o, ErrInUse)
		}
		return fmt.Errorf("orbit %q: %w", o, ErrUnknownOrbit)
	}
	if !a.free.isFree(i) {
		return fmt.Errorf("orbit %q: %w", o, ErrInUse)
	}
	a.free.remove(i)
	a.used++
	return nil
}

// Release frees o. It returns an error wrapping [ErrNotInUse] if o was free
// and [ErrUnknownOrbit] if o is not one of the allocator's orbits. It frees
// o even when ctx is done, because a release lost to a cancelled request
// would leave the orbit taken until the process restarts.
func (a *MemoryAllocator) Release(ctx context.Context, o Orbit) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, i, ok := a.lay.index.find(o)
	if !ok {
		if _, held := a.retired[o]; held {
			delete(a.retired, o)
			a.used--
			return nil
		}
		return fmt.Errorf("orbit %q: %w", o, ErrUnknownOrbit)
	}
	if a.free.isFree(i) {
		return fmt.Errorf("orbit %q: %w", o, ErrNotInUse)
	}
	a.used--
	a.free.add(i)
	return nil
}

// Len returns the number of orbits the allocator hands out, free or not.
func (a *MemoryAllocator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lay.index.total
}

// InUse returns the number of orbits currently taken.
func (a *MemoryAllocator) InUse() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used
}

// Contains reports whether o is one of the allocator's orbits, free or not
// (an orbit still held in a range SetRanges removed is not).
func (a *MemoryAllocator) Contains(o Orbit) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _, ok := a.lay.index.find(o)
	return ok
}

// Ranges returns a copy of the allocator's ranges in the order given.
func (a *MemoryAllocator) Ranges() []Range {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.lay.ranges)
}

// Policy returns the policy Allocate follows.
func (a *MemoryAllocator) Policy() Policy { return a.policy }

// The in-memory allocator is the reference implementation of the interface.
var (
	_ Allocator = (*MemoryAllocator)(nil)
	_ Reranger  = (*MemoryAllocator)(nil)
)
