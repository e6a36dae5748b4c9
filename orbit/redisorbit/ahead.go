package redisorbit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
)

// Claiming ahead. A park that asks Redis for its orbit waits a round trip,
// and on a busy box that wait has a long tail (Redis and the park server
// share the cores). So a node holds a few orbits claimed before any park
// asks (Config.ClaimAhead, more while parks come faster than a sync
// brings them, up to aheadMaxOf): Allocate hands one out without a round
// trip and the allocator claims more in the background. They are the
// orbits the policy would have chosen; under "lowest" a released orbit
// below one held ahead is kept instead of it, so a lone node hands out
// exactly what it would without them.
//
// An orbit held ahead is the node's in Redis like any other, under its
// lease, so it comes back when the node dies, leaves or loses its lease,
// and Allocate uses one only while that is certain to hold: the last
// renewal was sent less than two thirds of a lease ago, and Redis answered
// within the last aheadFresh (else a park must ask Redis, and gets 503
// while Redis cannot be reached, CLUSTER.md 7). Two costs, both bounded:
//   - A directed park elsewhere to an orbit held ahead here is asked of
//     this node (CodeAhead); it gives the orbit back at its next sync,
//     within aheadSync, and the directed park, retrying, gets it.
//   - A nearly full lot: no node claims ahead while aheadFloor or fewer
//     orbits are free, and one holding orbits ahead gives them back within
//     aheadSync once fewer than half of that are free.

// DefaultClaimAhead is how many orbits a node holds ahead when
// Config.ClaimAhead is 0.
const DefaultClaimAhead = 4

// aheadFresh is how recently Redis must have answered for an orbit held
// ahead to be handed out without asking it.
const aheadFresh = time.Second

// aheadSync is how often a node holding orbits ahead reads what the lot
// asks of them (given back for a directed park, or for a nearly full lot).
const aheadSync = 500 * time.Millisecond

// aheadRetry is how often Reserve asks again for an orbit another node
// holds ahead, and aheadWait how long it keeps asking.
const (
	aheadRetry = 50 * time.Millisecond
	aheadWait  = 2 * aheadSync
)

// aheadMaxOf is the most orbits a node may come to hold ahead, in a lot
// of n orbits: an eighth of those above the floor, between
// Config.ClaimAhead and 64.
func aheadMaxOf(n, floor, claimAhead int) int { return max(claimAhead, min(64, (n-floor)/8)) }

// aheadFloor is how many orbits a lot of size n keeps free of claims
// ahead: a quarter of it, and never fewer than 32.
func aheadFloor(n int) int { return max(32, n/4) }

// takeAhead hands out an orbit held ahead, when one may be used now.
// When none is held it asks the sync loop to claim some and returns a
// channel closed when it has: waiting for that costs about what a claim
// of one's own does, and a claim of one's own racing with the loop's
// would take the orbits out of the policy's order.
func (a *Allocator) takeAhead() (orbit.Orbit, bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.aheadUsableLocked() {
		return "", false, nil
	}
	if len(a.ahead) == 0 {
		if a.cfg.ClaimAhead == 0 || a.lowFree {
			return "", false, nil
		}
		// Parks come faster than one sync brings: hold more (aheadMax).
		a.target = min(2*a.target, a.aheadMax)
		a.starved = true
		if a.claiming == nil {
			a.claiming = make(chan struct{})
			a.urgentLocked()
		}
		return "", false, a.claiming
	}
	o := a.ahead[0]
	a.ahead = a.ahead[1:]
	a.held[o] = struct{}{}
	a.aheadUsed = append(a.aheadUsed, o)
	if len(a.ahead) <= a.target/2 {
		a.urgentLocked() // claim more now: at a high park rate the rest go in milliseconds
	}
	return o, true, nil
}

// aheadUsableLocked reports whether what the node holds ahead is still
// certainly its own: its lease was renewed recently enough that it cannot
// have run out, and Redis answered it a moment ago.
func (a *Allocator) aheadUsableLocked() bool {
	now := time.Now()
	return a.epoch != "" && !a.closed && now.Sub(a.renewedAt) <= a.cfg.Lease*2/3 && now.Sub(a.heardAt) <= aheadFresh
}

// keepAheadLocked takes o, just released by the node, among the orbits it
// holds ahead instead of freeing it, when the policy would hand o out
// before one of them: that one is freed instead. It reports whether it
// kept o.
func (a *Allocator) keepAheadLocked(o orbit.Orbit) bool {
	if a.cfg.Policy != orbit.Lowest || len(a.ahead) == 0 || a.epoch == "" {
		return false
	}
	last := a.ahead[len(a.ahead)-1]
	if a.place[o] > a.place[last] {
		return false
	}
	a.ahead[len(a.ahead)-1] = o
	a.sortAheadLocked()
	a.releasing[last] = struct{}{}
	a.aheadKept = append(a.aheadKept, o)
	return true
}

// takeOwnAheadLocked moves o from the orbits held ahead to the held ones,
// for a directed park to it on this node.
func (a *Allocator) takeOwnAheadLocked(o orbit.Orbit) bool {
	i := slices.Index(a.ahead, o)
	if i < 0 || !a.aheadUsableLocked() {
		return false
	}
	a.ahead = slices.Delete(a.ahead, i, i+1)
	a.held[o] = struct{}{}
	a.aheadUsed = append(a.aheadUsed, o)
	return true
}

// syncAhead tells Redis which orbits held ahead now hold calls, claims
// more up to the node's target (Config.ClaimAhead, more under load), and
// gives back those the lot asks for.
func (a *Allocator) syncAhead(ctx context.Context, tick bool) error {
	a.mu.Lock()
	epoch, gen := a.epoch, a.generation
	// Claim when half of what is held ahead is used (or a park waits),
	// not after every park: one script brings several.
	want := 0
	if tick {
		// Quiet for a tick: hold one fewer, down to Config.ClaimAhead.
		if !a.starved && a.target > a.cfg.ClaimAhead {
			a.target--
		}
		a.starved = false
	}
	if !a.lowFree && (len(a.ahead) <= a.target/2 || a.claiming != nil) {
		want = max(0, a.target-len(a.ahead))
	}
	used, kept := slices.Clone(a.aheadUsed), slices.Clone(a.aheadKept)
	holding := len(a.ahead) > 0
	// What became of the orbits held ahead, and what the lot asks of
	// them, can wait for the next tick; an orbit kept ahead instead of
	// freed cannot (until Redis knows, a directed park to it elsewhere
	// would find it in use).
	if epoch == "" || (want == 0 && len(kept) == 0 && !(tick && (holding || len(used) > 0))) {
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	args := make([]any, 0, 7+len(used)+len(kept))
	args = append(args, a.cfg.Node, epoch, gen, a.cfg.Policy.String(), want, a.floor, len(used))
	for _, o := range used {
		args = append(args, string(o))
	}
	for _, o := range kept {
		args = append(args, string(o))
	}
	sent := time.Now()
	res, err := a.s.ahead.Run(ctx, a.rdb, a.keys, args...).Slice()
	if code := redislot.ReplyCode(err); code != "" {
		switch code {
		case redislot.CodeFenced, redislot.CodeReset, redislot.CodeNoTable:
			return a.recover(ctx, epoch, code)
		}
		return fmt.Errorf("redisorbit: claiming ahead: %w", err)
	}
	if err != nil {
		return a.unavailable(ctx, err)
	}
	free, got, wanted, err := parseAhead(res)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.epoch != epoch || a.closed {
		return nil // recovered (or closing) meanwhile: what it claimed went with the old epoch
	}
	a.heardAt = sent
	a.aheadUsed = slices.Delete(a.aheadUsed, 0, len(used))
	a.aheadKept = slices.Delete(a.aheadKept, 0, len(kept))
	a.ahead = append(a.ahead, got...) // lru and random: in the order claimed
	if a.cfg.Policy == orbit.Lowest {
		a.sortAheadLocked()
	}
	a.lowFree = free <= a.floor/2 || (a.lowFree && free <= a.floor)
	var back []orbit.Orbit
	if a.lowFree {
		back = a.ahead
		a.ahead = nil
	} else {
		for _, o := range wanted {
			if i := slices.Index(a.ahead, o); i >= 0 {
				a.ahead = slices.Delete(a.ahead, i, i+1)
				back = append(back, o)
			}
		}
	}
	for _, o := range back {
		a.releasing[o] = struct{}{}
	}
	if len(back) > 0 {
		a.wakeLocked()
	}
	return nil
}

// parseAhead reads the ahead script's reply.
func parseAhead(res []any) (free int, got, wanted []orbit.Orbit, err error) {
	if len(res) != 3 {
		return 0, nil, nil, fmt.Errorf("redisorbit: ahead returned %d values", len(res))
	}
	n, ok := res[0].(int64)
	if !ok {
		return 0, nil, nil, fmt.Errorf("redisorbit: ahead returned %T for the free count", res[0])
	}
	list := func(v any) []orbit.Orbit {
		items, _ := v.([]any)
		out := make([]orbit.Orbit, 0, len(items))
		for _, it := range items {
			if s, ok := it.(string); ok {
				out = append(out, orbit.Orbit(s))
			}
		}
		return out
	}
	return int(n), list(res[1]), list(res[2]), nil
}

// sortAheadLocked puts the orbits held ahead in table order.
func (a *Allocator) sortAheadLocked() {
	slices.SortFunc(a.ahead, func(x, y orbit.Orbit) int { return cmp.Compare(a.place[x], a.place[y]) })
}

// claimed tells those waiting in takeAhead that a sync is over.
func (a *Allocator) claimed() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.claiming != nil {
		close(a.claiming)
		a.claiming = nil
	}
}

// urgentLocked asks the sync loop to claim ahead at once, without its
// linger.
func (a *Allocator) urgentLocked() {
	select {
	case a.urgent <- struct{}{}:
	default:
	}
}

// wakeLocked asks the sync loop to run soon (after its linger).
func (a *Allocator) wakeLocked() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}
