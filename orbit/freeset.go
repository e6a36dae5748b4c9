package orbit

import (
	"math/bits"
	"math/rand/v2"
)

// freeSet holds the free orbits of a MemoryAllocator as indexes into its
// ordered orbit list, and embodies a [Policy]: take says which free orbit
// goes next. Every method is O(1) (or a fixed number of word operations)
// whatever the number of orbits, and none allocates after construction.
// Callers hold the allocator's mutex and never remove or add an index twice.
type freeSet interface {
	// take removes and returns the next free index, or -1 if none is free.
	take() int
	// remove takes the free index i out of the set (a directed park).
	remove(i int)
	// add puts the in-use index i back (a release).
	add(i int)
	// isFree reports whether i is in the set. Each set answers from the
	// memory that remove or add would touch next, rather than from a
	// separate state array, so that a check and its update cost one cache
	// miss, not two, when 50,000 orbits no longer fit in the nearest cache.
	isFree(i int) bool
}

func newFreeSet(p Policy, n int, rng *rand.Rand) freeSet {
	switch p {
	case Lowest:
		return newLowestFree(n)
	case Random:
		return newRandomFree(n, rng)
	}
	return newLRUFree(n)
}

// slot is an orbit index inside the free structures. Sixteen bits cover
// MaxPoolLen with room for two markers, and halve the memory the structures
// touch at random against int32, which is what a call costs at 50,000
// orbits: cache misses, not instructions.
type slot uint16

const (
	noSlot    slot = 0xFFFF // past either end of the LRU queue; empty queue
	takenSlot slot = 0xFFFE // in both links of an in-use orbit
)

// The markers must stay above every index.
const _ uint16 = uint16(takenSlot) - MaxPoolLen

// lruFree is a queue of free indexes as an intrusive doubly linked list
// over an array of links: take pops the head, add pushes the tail, and
// remove unlinks from the middle, each in O(1). Starting with every index in
// order gives "never used first, in order" for free, since freed orbits only
// ever join behind them. Both links of a node share one array element, so
// touching a node is one cache line.
type lruFree struct {
	links      []lruLink
	head, tail slot // noSlot when empty
}

// lruLink holds a node's neighbours in the queue, noSlot past either end,
// and takenSlot in both while the orbit is in use.
type lruLink struct{ prev, next slot }

func newLRUFree(n int) *lruFree {
	l := &lruFree{links: make([]lruLink, n), head: 0, tail: slot(n - 1)}
	for i := range l.links {
		l.links[i] = lruLink{prev: slot(i - 1), next: slot(i + 1)}
	}
	l.links[0].prev = noSlot
	l.links[n-1].next = noSlot
	return l
}

func (l *lruFree) take() int {
	if l.head == noSlot {
		return -1
	}
	i := int(l.head)
	l.remove(i)
	return i
}

func (l *lruFree) remove(i int) {
	link := l.links[i]
	if link.prev != noSlot {
		l.links[link.prev].next = link.next
	} else {
		l.head = link.next
	}
	if link.next != noSlot {
		l.links[link.next].prev = link.prev
	} else {
		l.tail = link.prev
	}
	l.links[i] = lruLink{prev: takenSlot, next: takenSlot}
}

func (l *lruFree) add(i int) {
	l.links[i] = lruLink{prev: l.tail, next: noSlot}
	if l.tail != noSlot {
		l.links[l.tail].next = slot(i)
	} else {
		l.head = slot(i)
	}
	l.tail = slot(i)
}

func (l *lruFree) isFree(i int) bool { return l.links[i].next != takenSlot }

// lowestFree is a 64-ary tree of bitmaps: the leaves have one bit per index
// (set = free), and each bit of an upper level says whether the word below
// it has any bit set. Finding the lowest free index is one trailing-zero
// count per level, and 50,000 orbits need only three levels (782 leaf words,
// 13, then 1), so the cost is fixed, unlike scanning for the first free.
type lowestFree struct {
	levels [][]uint64 // levels[0] is the single root word; the last level is the leaves
}

func newLowestFree(n int) *lowestFree {
	// Size the levels bottom-up until one word covers the level below.
	var sizes []int
	for words := n; ; {
		words = (words + 63) / 64
		sizes = append(sizes, words)
		if words == 1 {
			break
		}
	}
	t := &lowestFree{levels: make([][]uint64, len(sizes))}
	for k, words := range sizes {
		t.levels[len(sizes)-1-k] = make([]uint64, words)
	}
	for i := range n {
		t.add(i)
	}
	return t
}

func (t *lowestFree) take() int {
	if t.levels[0][0] == 0 {
		return -1
	}
	i := 0
	for _, level := range t.levels {
		i = i<<6 | bits.TrailingZeros64(level[i])
	}
	t.remove(i)
	return i
}

func (t *lowestFree) isFree(i int) bool {
	return t.levels[len(t.levels)-1][i>>6]&(1<<(i&63)) != 0
}

func (t *lowestFree) remove(i int) {
	// Clear the bit, and its parent's bit while a word empties.
	for k := len(t.levels) - 1; k >= 0; k-- {
		w := i >> 6
		t.levels[k][w] &^= 1 << (i & 63)
		if t.levels[k][w] != 0 {
			return
		}
		i = w
	}
}

func (t *lowestFree) add(i int) {
	// Set the bit, and its parent's bit while a word was empty before.
	for k := len(t.levels) - 1; k >= 0; k-- {
		w := i >> 6
		wasEmpty := t.levels[k][w] == 0
		t.levels[k][w] |= 1 << (i & 63)
		if !wasEmpty {
			return
		}
		i = w
	}
}

// randomFree keeps the free indexes packed at the front of an array, with
// each index's position beside it, so a uniform pick, a removal from the
// middle (swap with the last, shrink) and an append are all O(1).
type randomFree struct {
	free []slot // the free indexes, in no order
	pos  []slot // pos[i] is i's place in free, takenSlot while i is in use
	rng  *rand.Rand
}

func newRandomFree(n int, rng *rand.Rand) *randomFree {
	r := &randomFree{free: make([]slot, n), pos: make([]slot, n), rng: rng}
	for i := range n {
		r.free[i] = slot(i)
		r.pos[i] = slot(i)
	}
	return r
}

func (r *randomFree) take() int {
	if len(r.free) == 0 {
		return -1
	}
	j := r.rng.IntN(len(r.free))
	i := int(r.free[j])
	r.removeAt(i, slot(j))
	return i
}

func (r *randomFree) remove(i int) { r.removeAt(i, r.pos[i]) }

// removeAt removes i, found at p in free, by moving the last free index
// into its place.
func (r *randomFree) removeAt(i int, p slot) {
	last := r.free[len(r.free)-1]
	r.free[p] = last
	r.pos[last] = p
	r.free = r.free[:len(r.free)-1]
	r.pos[i] = takenSlot
}

func (r *randomFree) add(i int) {
	r.pos[i] = slot(len(r.free))
	r.free = append(r.free, slot(i))
}

func (r *randomFree) isFree(i int) bool { return r.pos[i] != takenSlot }
