package redisorbit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
)

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("redisorbit: allocator closed")

// Allocator is one node's share of an orbit lot kept in Redis: an
// orbit.Allocator (and orbit.Ranger) whose claims hold across every node
// of the cluster. It is safe for concurrent use.
type Allocator struct {
	cfg    Config
	rdb    redis.UniversalClient
	keys   []string // the lot's key prefix, KEYS[1] of every script
	spec   string   // the ranges as the cluster stores them
	orbits []string // every orbit in table order, for init
	s      scripts

	mu         sync.Mutex
	epoch      string // this incarnation; "" until joined
	generation string // the lot's generation in Redis when we joined
	held       map[orbit.Orbit]struct{}
	releasing  map[orbit.Orbit]struct{} // released, not yet in Redis (syncLoop)
	closed     bool
	renewedAt  time.Time // when the last renewal that succeeded was sent
	heardAt    time.Time // when the last script Redis answered was sent; zero after a failure

	// Claiming ahead (ahead.go).
	place     map[orbit.Orbit]int // each orbit's place in the table
	floor     int                 // claim ahead only while more than this many orbits are free
	ahead     []orbit.Orbit       // claimed, no call yet, in the order Allocate hands them out
	aheadUsed []orbit.Orbit       // taken from ahead since the last sync
	aheadKept []orbit.Orbit       // released and kept ahead since the last sync
	lowFree   bool                // the lot is nearly full: hold nothing ahead
	target    int                 // how many to hold ahead now: Config.ClaimAhead, more under load
	aheadMax  int                 // the most target may grow to
	starved   bool                // a park found nothing held ahead since the last tick
	claiming  chan struct{}       // closed when the next sync is done; nil if nobody waits for one

	peersMu sync.Mutex // RecentPeers' list and when it was read
	peers   []Peer
	peersAt time.Time

	recoverMu sync.Mutex    // one recovery at a time
	wake      chan struct{} // a release is pending, or an orbit held ahead was used
	urgent    chan struct{} // a park waits for the sync loop (takeAhead)
	linger    time.Duration // syncLinger (guarded by mu; tests lengthen it)
	stop      chan struct{}
	wg        sync.WaitGroup // the loops and OnLost calls

	// The stall guard (Stalled): when the last renewal attempt ended, in
	// nanoseconds since born (monotonic), and OnLost calls under way.
	born    time.Time
	triedAt atomic.Int64
	losing  atomic.Int32

	// Counted for Collector: lease renewals by result, and requests to
	// Redis that failed.
	renewed, renewFailed, redisErrors atomic.Uint64
}

var (
	_ orbit.Allocator = (*Allocator)(nil)
	_ orbit.Ranger    = (*Allocator)(nil)
	_ orbit.Leased    = (*Allocator)(nil)
)

// New joins the cluster's lot in Redis: it stores the orbit table if the
// cluster has none yet (else checks that the node was given the same, a
// *MismatchError if not), starts a new incarnation of the node, and keeps
// its lease renewed until Close. ctx bounds only this setup; Redis
// unreachable is an error wrapping orbit.ErrUnavailable.
func New(ctx context.Context, cfg Config) (*Allocator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// The in-memory allocator applies every rule about ranges and policy.
	if _, err := orbit.NewMemoryAllocator(cfg.Ranges, orbit.MemoryOptions{Policy: cfg.Policy}); err != nil {
		return nil, fmt.Errorf("redisorbit: %w", err)
	}
	a := &Allocator{
		born:      time.Now(),
		cfg:       cfg,
		rdb:       cfg.Client,
		keys:      []string{redislot.Prefix(cfg.Cluster)},
		s:         loadScripts(),
		held:      make(map[orbit.Orbit]struct{}),
		releasing: make(map[orbit.Orbit]struct{}),
		place:     make(map[orbit.Orbit]int),
		wake:      make(chan struct{}, 1),
		urgent:    make(chan struct{}, 1),
		linger:    syncLinger,
		stop:      make(chan struct{}),
	}
	for _, r := range cfg.Ranges {
		for k := range r.Len() {
			a.place[r.At(k)] = len(a.orbits)
			a.orbits = append(a.orbits, string(r.At(k)))
		}
	}
	a.floor = aheadFloor(len(a.orbits))
	if len(a.orbits) <= a.floor+a.cfg.ClaimAhead {
		a.cfg.ClaimAhead = 0 // a small lot: every orbit for whichever node parks first
	}
	a.target, a.aheadMax = a.cfg.ClaimAhead, aheadMaxOf(len(a.orbits), a.floor, a.cfg.ClaimAhead)
	a.spec = specOf(cfg.Ranges)
	if err := a.join(ctx, false); err != nil {
		return nil, err
	}
	a.wake <- struct{}{} // claim ahead at once
	a.tried()            // joined: as good as a renewal
	a.wg.Go(a.renewLoop)
	a.wg.Go(a.syncLoop)
	return a, nil
}

// CheckTable reaches Redis and compares the cluster's stored orbit table
// and policy with cfg's, without joining or storing anything: what a
// program's -check does. It returns nil when they match or when the
// cluster has no table yet (the first node to start stores it), a
// *MismatchError naming both when they differ, and an error wrapping
// orbit.ErrUnavailable when Redis does not answer.
func CheckTable(ctx context.Context, cfg Config) error {
	cfg.Node = cmp.Or(cfg.Node, "check") // not joining: any valid name
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	spec := specOf(cfg.Ranges)
	have, err := cfg.Client.HMGet(ctx, redislot.Prefix(cfg.Cluster)+":config", "orbits", "policy").Result()
	if err != nil {
		return fmt.Errorf("%w: cluster %q: %w", orbit.ErrUnavailable, cfg.Cluster, err)
	}
	stored, _ := have[0].(string)
	policy, _ := have[1].(string)
	switch {
	case stored == "":
		return nil
	case stored != spec:
		return &MismatchError{Cluster: cfg.Cluster, Field: "orbits", Theirs: stored, Ours: spec}
	case policy != cfg.Policy.String():
		return &MismatchError{Cluster: cfg.Cluster, Field: "policy", Theirs: policy, Ours: cfg.Policy.String()}
	}
	return nil
}

// specOf writes ranges as the cluster stores them.
func specOf(ranges []orbit.Range) string {
	specs := make([]string, len(ranges))
	for i, r := range ranges {
		specs[i] = r.String()
	}
	return strings.Join(specs, ",")
}

// Ranges returns the lot's ranges in the order given.
func (a *Allocator) Ranges() []orbit.Range { return slices.Clone(a.cfg.Ranges) }

// Node returns the node's name.
func (a *Allocator) Node() string { return a.cfg.Node }

// Cluster returns the lot's name in Redis.
func (a *Allocator) Cluster() string { return a.cfg.Cluster }

// Client returns the Redis client the allocator uses, for the other parts
// of the node that share its lot (park/redispark).
func (a *Allocator) Client() redis.UniversalClient { return a.rdb }

// Incarnation returns the node's current fencing epoch (a new one after
// every join, larger than any before it in the same Redis) and the
// generation of the lot it joined; both are empty while the node is not
// joined (Redis unreachable). Writes about the node's orbits name both.
func (a *Allocator) Incarnation() (epoch, generation string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.epoch, a.generation
}

// Allocate takes the free orbit the cluster's policy chooses. Errors wrap
// orbit.ErrFull when every orbit of the cluster is taken, and
// orbit.ErrUnavailable when Redis cannot be reached or is settling.
func (a *Allocator) Allocate(ctx context.Context) (orbit.Orbit, error) {
	o, ok, wait := a.takeAhead()
	if ok {
		return o, nil // the usual park: no timer, no round trip
	}
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	for range 2 {
		if wait == nil {
			break
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return "", a.unavailable(ctx, ctx.Err())
		}
		if o, ok, wait = a.takeAhead(); ok {
			return o, nil
		}
	}
	o, err := a.claim(ctx, a.s.allocate, "")
	if err == nil {
		a.mu.Lock()
		if len(a.ahead) < a.target {
			a.urgentLocked() // claim ahead for the next park
		}
		a.mu.Unlock()
	}
	return o, err
}

// Reserve takes exactly o, for a directed park. Errors wrap orbit.ErrInUse
// when any node holds it, orbit.ErrUnknownOrbit when it is in none of the
// ranges, orbit.ErrUnavailable as Allocate's do.
func (a *Allocator) Reserve(ctx context.Context, o orbit.Orbit) error {
	if !a.knows(o) {
		return fmt.Errorf("orbit %q: %w", o, orbit.ErrUnknownOrbit)
	}
	a.mu.Lock()
	if _, pending := a.releasing[o]; pending && !a.closed {
		// Released here a moment ago and not yet in Redis: still ours.
		delete(a.releasing, o)
		a.held[o] = struct{}{}
		a.mu.Unlock()
		return nil
	}
	if !a.closed && a.takeOwnAheadLocked(o) {
		a.wakeLocked()
		a.mu.Unlock()
		return nil
	}
	a.mu.Unlock()
	// Another node may hold o ahead, with no call in it: it gives o back
	// at its next sync, unless it puts a call there first.
	deadline := time.Now().Add(aheadWait)
	for {
		_, err := a.claim(ctx, a.s.reserve, o)
		if !errors.Is(err, errHeldAhead) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("orbit %q: %w (claimed ahead by another node, not given back)", o, orbit.ErrInUse)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(aheadRetry):
		}
	}
}

// requestWait bounds how long a request on a park's or a retrieve's path
// (a claim, Holder, Peers) waits for Redis: a silent Redis (paused, cut
// off) gets the caller a 503 within it rather than a hung call. It holds
// only with a client whose Options.ContextTimeoutEnabled is set (see
// Config.Client).
const requestWait = time.Second

// errSilent is why a request gave up after requestWait.
var errSilent = errors.New("Redis did not answer within " + requestWait.String())

// errHeldAhead: the orbit a reserve asked for is held ahead by another
// node, which has been asked for it.
var errHeldAhead = errors.New("redisorbit: orbit held ahead by another node")

// claim runs allocate (o empty) or reserve for this incarnation,
// recovering once from a lost lease or a reset lot before giving up.
func (a *Allocator) claim(ctx context.Context, script *redis.Script, o orbit.Orbit) (orbit.Orbit, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	for attempt := 0; ; attempt++ {
		epoch, gen, err := a.incarnation()
		if err != nil {
			return "", err
		}
		args := []any{a.cfg.Node, epoch, gen}
		if o != "" {
			args = append(args, string(o))
		} else {
			args = append(args, a.cfg.Policy.String())
		}
		sent := time.Now()
		res, err := script.Run(ctx, a.rdb, a.keys, args...).Text()
		if err == nil {
			got := o
			if got == "" {
				got = orbit.Orbit(res)
			}
			a.mu.Lock()
			a.held[got] = struct{}{}
			if i := slices.Index(a.ahead, got); i >= 0 {
				// Reserved while held ahead (here, but not handed out as
				// such while Redis seemed away): it holds a call now.
				a.ahead = slices.Delete(a.ahead, i, i+1)
			}
			a.heardAt = sent
			a.mu.Unlock()
			return got, nil
		}
		switch code := redislot.ReplyCode(err); code {
		case redislot.CodeAhead:
			return "", errHeldAhead
		case redislot.CodeFull:
			return "", fmt.Errorf("%w: every orbit of cluster %q is in use", orbit.ErrFull, a.cfg.Cluster)
		case redislot.CodeInUse:
			return "", fmt.Errorf("orbit %q: %w", o, orbit.ErrInUse)
		case redislot.CodeUnknown:
			return "", fmt.Errorf("orbit %q: %w (cluster %q)", o, orbit.ErrUnknownOrbit, a.cfg.Cluster)
		case redislot.CodeSettling:
			return "", fmt.Errorf("%w: cluster %q is settling after Redis lost it", orbit.ErrUnavailable, a.cfg.Cluster)
		case redislot.CodeFenced, redislot.CodeReset, redislot.CodeNoTable:
			if attempt > 0 {
				return "", fmt.Errorf("%w: cluster %q: %s", orbit.ErrUnavailable, a.cfg.Cluster, code)
			}
			if err := a.recover(ctx, epoch, code); err != nil {
				return "", err
			}
		default:
			return "", a.unavailable(ctx, err)
		}
	}
}

// Release frees o if this incarnation holds it. It returns at once: the
// release reaches Redis from a goroutine of the allocator's, batched with
// the others pending, within moments (a lot releases on its retrieve
// path, which should not wait for a round trip). Until then other nodes
// still see o held here. Errors wrap orbit.ErrNotInUse when the node does
// not hold o (released twice, or taken from the node after its lease ran
// out: OnLost said so) and orbit.ErrUnknownOrbit for an orbit in no range.
// While Redis cannot be reached the release is retried; it is dropped
// when the node's lease runs out or Redis loses the lot, which free the
// orbit anyway.
func (a *Allocator) Release(ctx context.Context, o orbit.Orbit) error {
	if !a.knows(o) {
		return fmt.Errorf("orbit %q: %w", o, orbit.ErrUnknownOrbit)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, mine := a.held[o]
	switch {
	case !mine:
		return fmt.Errorf("orbit %q: %w", o, orbit.ErrNotInUse)
	case a.closed:
		return ErrClosed
	}
	delete(a.held, o)
	if !a.keepAheadLocked(o) {
		a.releasing[o] = struct{}{}
	}
	a.wakeLocked()
	return nil
}

// syncLoop sends the pending releases to Redis, all in one script, and
// claims ahead (ahead.go), as soon as there is anything to do, and again
// every releaseRetry: while Redis cannot be reached, and to hear what the
// lot asks of the orbits held ahead.
func (a *Allocator) syncLoop() {
	t := time.NewTicker(releaseRetry)
	defer t.Stop()
	linger := time.NewTimer(0)
	<-linger.C
	for {
		tick, urgent := false, false
		select {
		case <-a.stop:
			a.claimed()
			return
		case <-a.wake:
			// Wait a moment, so that one script carries what a burst of
			// parks and retrieves asks, unless a park waits for it.
			a.mu.Lock()
			linger.Reset(a.linger)
			a.mu.Unlock()
			select {
			case <-a.stop:
				a.claimed()
				return
			case <-a.urgent:
				linger.Stop()
				urgent = true
			case <-linger.C:
			}
		case <-a.urgent:
			urgent = true
		case <-t.C:
			tick = true
		}
		// Releases first, so that under "lowest" an orbit given back is the
		// next one claimed ahead; under the other policies, not while parks
		// wait for claims.
		urgent = urgent && a.cfg.Policy != orbit.Lowest
		ctx, cancel := context.WithTimeout(context.Background(), releaseRetry)
		if urgent {
			a.syncAndLog(ctx, tick)
		}
		if err := a.flushReleases(ctx); err != nil {
			a.cfg.Logger.Debug("releasing orbits failed; retrying", "cluster", a.cfg.Cluster, "err", err)
		}
		if !urgent {
			a.syncAndLog(ctx, tick)
		}
		cancel()
	}
}

// syncAndLog claims ahead (syncAhead) and tells those waiting for it.
func (a *Allocator) syncAndLog(ctx context.Context, tick bool) {
	if err := a.syncAhead(ctx, tick); err != nil {
		a.cfg.Logger.Debug("claiming ahead failed", "cluster", a.cfg.Cluster, "err", err)
	}
	a.claimed()
}

// syncLinger is how long the sync loop gathers releases and claims before
// it sends them.
const syncLinger = 10 * time.Millisecond

// releaseRetry is how often releases that found Redis unreachable are
// tried again (and aheadSync, how often a node holding orbits ahead
// syncs).
const releaseRetry = aheadSync

// flushReleases sends every pending release now.
func (a *Allocator) flushReleases(ctx context.Context) error {
	a.mu.Lock()
	pending := slices.Sorted(maps.Keys(a.releasing))
	epoch, gen := a.epoch, a.generation
	a.mu.Unlock()
	if len(pending) == 0 || epoch == "" {
		return nil
	}
	args := []any{a.cfg.Node, epoch, gen}
	for _, o := range pending {
		args = append(args, string(o))
	}
	res, err := a.s.release.Run(ctx, a.rdb, a.keys, args...).StringSlice()
	code := redislot.ReplyCode(err)
	if err != nil && code == "" {
		return a.unavailable(ctx, err) // kept: retried
	}
	a.mu.Lock()
	for i, o := range pending {
		delete(a.releasing, o)
		if code == "" && i < len(res) && res[i] != "OK" {
			a.cfg.Logger.Warn("releasing orbit found it not ours", "cluster", a.cfg.Cluster, "orbit", o, "status", res[i])
		}
	}
	a.mu.Unlock()
	return nil // a reset lot or a lost lease freed them anyway
}

// SetAdvertise changes the SIP address other nodes send this node's
// retrieves to (Config.Advertise), for a node that knows it only once it
// listens. A later rejoin advertises it too.
func (a *Allocator) SetAdvertise(ctx context.Context, addr string) error {
	if strings.ContainsAny(addr, " \t\r\n") {
		return &ConfigError{"Advertise", fmt.Sprintf("%q", addr), "must be a host:port without spaces"}
	}
	a.mu.Lock()
	a.cfg.Advertise = addr
	epoch := a.epoch
	a.mu.Unlock()
	if epoch == "" {
		return nil // written when the node joins again
	}
	err := a.s.advertise.Run(ctx, a.rdb, a.keys, a.cfg.Node, epoch, addr).Err()
	if err != nil && redislot.ReplyCode(err) == "" {
		return a.unavailable(ctx, err)
	}
	return nil // fenced: the next join writes it
}

// Close stops renewing the lease and leaves the cluster: whatever this
// incarnation still holds is freed at once rather than after the lease.
// A lot should have released its orbits first (park.Lot.Shutdown). It
// waits for OnLost calls in progress; ctx bounds the leave.
func (a *Allocator) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	for _, o := range a.ahead {
		a.releasing[o] = struct{}{}
	}
	a.ahead = nil
	a.mu.Unlock()
	close(a.stop)
	a.wg.Wait()
	_ = a.flushReleases(ctx) // the leave would free them too; this one logs any not ours
	epoch, gen := a.Incarnation()
	if epoch == "" {
		return nil
	}
	if err := a.s.leave.Run(ctx, a.rdb, a.keys, a.cfg.Node, epoch, gen).Err(); err != nil {
		return a.unavailable(ctx, err)
	}
	return nil
}

// incarnation returns the current epoch and generation.
func (a *Allocator) incarnation() (epoch, gen string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return "", "", ErrClosed
	}
	if a.epoch == "" {
		return "", "", fmt.Errorf("%w: node %q has not joined cluster %q (Redis unreachable)", orbit.ErrUnavailable, a.cfg.Node, a.cfg.Cluster)
	}
	return a.epoch, a.generation, nil
}

func (a *Allocator) knows(o orbit.Orbit) bool {
	for _, r := range a.cfg.Ranges {
		if r.Contains(o) {
			return true
		}
	}
	return false
}

// unavailable wraps a failure to talk to Redis; the caller's own
// cancellation stays what it is.
func (a *Allocator) unavailable(ctx context.Context, err error) error {
	a.mu.Lock()
	a.heardAt = time.Time{} // nothing held ahead is handed out until Redis answers again
	a.mu.Unlock()
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		if !errors.Is(context.Cause(ctx), errSilent) {
			return err // the caller's own cancellation
		}
		err = errSilent
	}
	a.redisErrors.Add(1)
	return fmt.Errorf("%w: cluster %q: %w", orbit.ErrUnavailable, a.cfg.Cluster, err)
}

// heldOrbits returns the orbits this node believes it holds.
func (a *Allocator) heldOrbits() []orbit.Orbit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.held))
}
