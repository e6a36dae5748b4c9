package orbit

import (
	"context"
	"strconv"
)

// Allocator hands out orbits. Implementations must be safe for concurrent use. Methods take a
// context because a shared store (Redis, several park servers) is a later implementation.
type Allocator interface {
	// Allocate takes a free orbit chosen by the allocator's policy. ErrFull when none is free.
	Allocate(ctx context.Context) (Orbit, error)
	// Reserve takes exactly the named orbit (directed park). Atomic. ErrInUse if taken,
	// ErrUnknownOrbit if not in any of its ranges.
	Reserve(ctx context.Context, o Orbit) error
	// Release frees an orbit. ErrNotInUse if it was free, ErrUnknownOrbit if not its orbit.
	Release(ctx context.Context, o Orbit) error
}

// Ranger is implemented by an Allocator that knows which orbits it hands
// out, as MemoryAllocator does and a shared one should: a park lot then
// tells an orbit in none of its ranges (ErrUnknownOrbit) from an empty one,
// and a SIP host takes the orbits it answers for from the lot instead of
// being told them twice.
type Ranger interface {
	// Ranges returns the allocator's ranges in the order given.
	Ranges() []Range
}

var _ Ranger = (*MemoryAllocator)(nil)

// Reranger is an allocator whose ranges can change while calls are parked
// (a reload): orbits in use stay in use, in the new ranges or outside
// them until they are released. MemoryAllocator is one; a cluster's
// shared table changes with every node, so redisorbit's is not.
type Reranger interface {
	Ranger
	SetRanges(ranges []Range) error
}

// Leased is implemented by a shared allocator whose node holds its orbits
// under a lease that other nodes can take over when it runs out
// (orbit/redisorbit). A park lot asks it before it acts on a parked call on
// its own (a recall, hold music), since another node may have taken the
// call over while this one was paused.
type Leased interface {
	// Stalled reports whether the node went silent for about its lease (its
	// process was paused: SIGSTOP, a long stall) and has not yet heard
	// whether it kept its orbits. It must act on no parked call meanwhile.
	Stalled() bool
}

// Policy decides which free orbit [Allocator.Allocate] takes. Orbits are
// ordered as the ranges are given, ascending within a range.
type Policy int

const (
	// LeastRecentlyFreed takes never-used orbits first, in order, then the
	// orbit freed longest ago. It is the default because an orbit that was
	// just freed may still be dialed by someone who read it a moment ago, or
	// lit on a BLF key; reusing it last makes such a retrieve reach nobody
	// rather than a stranger's call. A directed park counts as a use.
	LeastRecentlyFreed Policy = iota
	// Lowest takes the first free orbit in order, which keeps the busy
	// orbits few and short to read on a BLF panel.
	Lowest
	// Random takes a free orbit uniformly at random, so an orbit number does
	// not reveal how many calls are parked.
	Random
)

// policyNames are the names [ParsePolicy] reads and [Policy.String] writes,
// the values of the park server's -policy flag.
var policyNames = [...]string{LeastRecentlyFreed: "lru", Lowest: "lowest", Random: "random"}

// ParsePolicy reads a policy name: "lru", "lowest" or "random".
func ParsePolicy(s string) (Policy, error) {
	for p, name := range policyNames {
		if s == name {
			return Policy(p), nil
		}
	}
	return 0, &RuleError{Subject: "orbit policy", Value: s, Rule: ErrUnknownPolicy}
}

// String returns the policy's name as [ParsePolicy] reads it, or
// "Policy(n)" for a value that is not a policy.
func (p Policy) String() string {
	if p.valid() {
		return policyNames[p]
	}
	return "Policy(" + strconv.Itoa(int(p)) + ")"
}

// MarshalText returns the policy's name, so a Policy can be written to
// config files and used with flag.TextVar.
func (p Policy) MarshalText() ([]byte, error) {
	if !p.valid() {
		return nil, &RuleError{Subject: "orbit policy", Value: p.String(), Rule: ErrUnknownPolicy}
	}
	return []byte(policyNames[p]), nil
}

// UnmarshalText reads a policy name as [ParsePolicy] does.
func (p *Policy) UnmarshalText(text []byte) error {
	parsed, err := ParsePolicy(string(text))
	if err != nil {
		return err
	}
	*p = parsed
	return nil
}

func (p Policy) valid() bool { return p >= 0 && int(p) < len(policyNames) }
