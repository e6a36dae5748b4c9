package park

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpark/callpark/orbit"
)

// Errors a Lot returns; only a SIP layer maps them to status codes.
var (
	// ErrLotFull: no free orbit (486 on the wire). It is orbit.ErrFull.
	ErrLotFull = orbit.ErrFull
	// ErrOrbitInUse: a directed park named an occupied orbit (486). It is orbit.ErrInUse.
	ErrOrbitInUse = orbit.ErrInUse
	// ErrUnknownOrbit: the orbit is in none of the lot's ranges (404). It is orbit.ErrUnknownOrbit.
	ErrUnknownOrbit = orbit.ErrUnknownOrbit
	// ErrNotParked: no call waits in that orbit, or the call has left (404).
	ErrNotParked = errors.New("park: no call parked there")
	// ErrStale: safe retrieve failed: the orbit now holds another call than
	// the park ID names (Lync's SafeRetrieveUri), so nothing was handed over.
	ErrStale = errors.New("park: orbit holds a different call than the park ID names")
	// ErrClosed: the lot is shutting down and takes no new calls (503).
	ErrClosed = errors.New("park: lot is shut down")
	// ErrAlreadyParked: the leg of a ParkRequest or ReplaceRequest is
	// parked already; a leg is in the lot at most once.
	ErrAlreadyParked = errors.New("park: leg is parked already")
	// ErrNotAuthorized: Config.AuthorizeRetrieve refused the retriever
	// (403). The refusal comes before the orbit is looked at, so it says
	// nothing about whether a call waits there.
	ErrNotAuthorized = errors.New("park: retrieve not authorized")
)

// Lot is a call park: it puts calls into orbits, hands them to whoever
// retrieves them, and rings them back when nobody does. It is safe for
// concurrent use. Each call's state changes under one mutex, so every call
// ends in exactly one Outcome whatever races between retrieve, hang-up and
// timeout.
type Lot struct {
	cfg    Config // as given to NewLot; what Reconfigure changes is in live
	orbits orbit.Allocator
	leased orbit.Leased // orbits, when it is one: Stalled
	log    *slog.Logger
	live   atomic.Pointer[settings]

	mu      sync.Mutex
	byOrbit map[orbit.Orbit]*Call
	// byLeg holds every leg in the lot (nil while its Park is under way),
	// so that no leg is parked twice. Only pointer legs are tracked
	// (legKey).
	byLeg   map[any]*Call
	closing bool
	drained chan struct{} // closed when closing and the lot is empty
	ringers sync.WaitGroup
	takers  sync.WaitGroup // takeovers under way (takeover.go)

	stopTakeOver func() // Cluster.TakeOver's, until Shutdown

	events eventQueue
}

// NewLot validates cfg and returns a lot ready to park calls.
func NewLot(cfg Config) (*Lot, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Lot{
		cfg:     cfg,
		orbits:  cfg.Orbits,
		log:     cfg.Logger,
		byOrbit: make(map[orbit.Orbit]*Call),
		byLeg:   make(map[any]*Call),
		drained: make(chan struct{}),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.orbits == nil {
		r, err := orbit.ParseRange(DefaultOrbits)
		if err != nil {
			return nil, err
		}
		if l.orbits, err = orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{}); err != nil {
			return nil, err
		}
	}
	var ranges []orbit.Range
	if r, ok := l.orbits.(orbit.Ranger); ok {
		ranges = r.Ranges()
	}
	l.live.Store(newSettings(cfg, ranges))
	l.leased, _ = l.orbits.(orbit.Leased)
	if cfg.Cluster != nil {
		l.events.add(cfg.Cluster) // for the lot's life: no stop
		if cfg.Adopter != nil {
			l.stopTakeOver = cfg.Cluster.TakeOver(l.takeOver)
		}
	}
	return l, nil
}

// Config returns the lot's configuration with defaults filled in, as
// Reconfigure last changed it.
func (l *Lot) Config() Config { return l.live.Load().cfg }

// Ranges returns the orbit ranges the lot parks into, when its allocator
// knows them (orbit.Ranger: the in-memory one does); nil otherwise. A SIP
// host answers for exactly these orbits.
func (l *Lot) Ranges() []orbit.Range { return slices.Clone(l.live.Load().ranges) }

// knows reports whether o is one of the lot's orbits; true when the lot
// does not know its ranges.
func (l *Lot) knows(o orbit.Orbit) bool {
	ranges := l.live.Load().ranges
	if ranges == nil {
		return true
	}
	for _, r := range ranges {
		if r.Contains(o) {
			return true
		}
	}
	return false
}

// legKey is the key a leg is tracked under in byLeg: the leg itself, when
// it is a pointer, as every real leg is. Two equal values of another kind
// (a struct) need not be one call, so those are not tracked.
func legKey(leg Leg) (any, bool) {
	if leg == nil || reflect.TypeOf(leg).Kind() != reflect.Pointer {
		return nil, false
	}
	return leg, true
}

// claimLeg records that leg is being parked, or reports ErrAlreadyParked.
// The caller holds l.mu.
func (l *Lot) claimLegLocked(leg Leg) error {
	k, ok := legKey(leg)
	if !ok {
		return nil
	}
	if _, dup := l.byLeg[k]; dup {
		return ErrAlreadyParked
	}
	l.byLeg[k] = nil
	return nil
}

// forgetLegLocked undoes claimLegLocked; the caller holds l.mu.
func (l *Lot) forgetLegLocked(leg Leg) {
	if k, ok := legKey(leg); ok {
		delete(l.byLeg, k)
	}
}

func (l *Lot) forgetLeg(leg Leg) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.forgetLegLocked(leg)
}

// Music returns what parked callers hear (Config.MusicOnHold, else
// BuiltinMusic()), nil when music is disabled.
func (l *Lot) Music() Music { return l.live.Load().music }

// ParkRequest describes a call to park.
type ParkRequest struct {
	// Leg is the call to park. Required.
	Leg Leg
	// Orbit, when set, is a directed park: exactly that orbit or an error
	// (ErrOrbitInUse, ErrUnknownOrbit); never a pickup of what is there.
	Orbit orbit.Orbit
	// Parker is the URI recalls ring; empty means unknown, and a timeout goes
	// straight to the fallback.
	Parker string
	// Party names who is parked, for snapshots, events and BLF.
	Party string
}

// Park puts a call into an orbit, starts its hold music and its pickup
// timer, and returns its handle. On error the lot keeps nothing: the leg is
// the caller's to refuse or hang up (a leg whose Hold succeeded before the
// lot found it was shutting down is playing music).
func (l *Lot) Park(ctx context.Context, req ParkRequest) (*Call, error) {
	if req.Leg == nil {
		return nil, &RequestError{"ParkRequest.Leg", nil, "required"}
	}
	if err := checkParker("ParkRequest.Parker", req.Parker); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	err := l.claimLegLocked(req.Leg)
	l.mu.Unlock()
	if err != nil {
		return nil, err
	}
	o := req.Orbit
	if o != "" {
		err = l.orbits.Reserve(ctx, o)
	} else {
		o, err = l.orbits.Allocate(ctx)
	}
	if err != nil {
		l.forgetLeg(req.Leg)
		return nil, err
	}
	if err := req.Leg.Hold(ctx, l.Music()); err != nil {
		l.forgetLeg(req.Leg)
		l.release(o)
		return nil, fmt.Errorf("park: holding the call in orbit %s: %w", o, err)
	}
	c := &Call{
		lot:     l,
		id:      newParkID(),
		orbit:   o,
		party:   req.Party,
		since:   time.Now(),
		leg:     req.Leg,
		parker:  req.Parker,
		state:   Parked,
		done:    make(chan struct{}),
		handoff: l.handoffOf(req.Leg),
	}
	l.mu.Lock()
	if l.closing {
		l.forgetLegLocked(req.Leg)
		l.mu.Unlock()
		l.release(o)
		return nil, ErrClosed
	}
	if prev := l.byOrbit[o]; prev != nil {
		// The allocator handed out an orbit the lot still holds: a broken
		// (shared) allocator. Refuse rather than put two calls in one orbit.
		l.forgetLegLocked(req.Leg)
		l.mu.Unlock()
		return nil, fmt.Errorf("park: allocator gave orbit %s, still held by park ID %s: %w", o, prev.id, ErrOrbitInUse)
	}
	l.byOrbit[o] = c
	if k, ok := legKey(req.Leg); ok {
		l.byLeg[k] = c
	}
	wait := l.live.Load().cfg.PickupTimeout
	c.recallAt = c.since.Add(wait)
	c.timer = time.AfterFunc(wait, c.pickupTimedOut)
	l.publish(Event{Kind: EventParked, Call: c.infoLocked()})
	l.mu.Unlock()
	if l.log.Enabled(context.Background(), slog.LevelDebug) { // boxing the attributes costs a fifth of a park
		l.log.Debug("call parked", "orbit", o, "park_id", c.id, "parker", c.parker)
	}
	return c, nil
}

// RetrieveRequest names the call to retrieve.
type RetrieveRequest struct {
	Orbit orbit.Orbit
	// ParkID, when set, makes this a safe retrieve: it fails with ErrStale
	// instead of handing over a different call that now sits in the orbit.
	ParkID string
	// Retriever names who retrieves (a SIP URI from a SIP host), for logs
	// and for Config.AuthorizeRetrieve.
	Retriever string
	// Source is the network address the retrieve came from, when the host
	// knows it; zero otherwise. AllowFrom decides on it.
	Source netip.AddrPort
}

// Retrieve takes the call out of its orbit and hands its leg to the caller,
// who connects it (Call.Leg). Of concurrent retrieves exactly one wins; the
// others get ErrNotParked. A retrieve beats a ringing recall or fallback,
// which is cancelled. When Config.AuthorizeRetrieve refuses the request,
// Retrieve returns an error wrapping ErrNotAuthorized and the call stays.
// In a cluster, a call parked on another node is an *ElsewhereError naming
// the node to send the retrieve to.
func (l *Lot) Retrieve(ctx context.Context, req RetrieveRequest) (*Call, error) {
	if err := l.authorizeRetrieve(ctx, req); err != nil {
		return nil, err
	}
	l.mu.Lock()
	c := l.byOrbit[req.Orbit]
	if c == nil {
		l.mu.Unlock()
		if !l.knows(req.Orbit) {
			// Checked once the orbit holds nothing here: a call parked in
			// a range a reload removed is retrieved until it ends.
			return nil, fmt.Errorf("orbit %q: %w", req.Orbit, ErrUnknownOrbit)
		}
		return nil, l.locate(ctx, req.Orbit)
	}
	if req.ParkID != "" && req.ParkID != c.id {
		l.mu.Unlock()
		return nil, fmt.Errorf("orbit %s holds park ID %s, not %s: %w", req.Orbit, c.id, req.ParkID, ErrStale)
	}
	if c.handing {
		l.mu.Unlock()
		return nil, errHanding(c.orbit)
	}
	c.endLocked(Retrieved)
	l.mu.Unlock()
	l.release(c.orbit)
	if l.log.Enabled(context.Background(), slog.LevelDebug) { // boxing the attributes costs a fifth of a park
		l.log.Debug("call retrieved", "orbit", c.orbit, "park_id", c.id, "retriever", req.Retriever)
	}
	return c, nil
}

// authorizeRetrieve asks Config.AuthorizeRetrieve, without the lot's lock
// (the hook may call Lookup), whether req may go ahead.
func (l *Lot) authorizeRetrieve(ctx context.Context, req RetrieveRequest) error {
	if l.cfg.AuthorizeRetrieve == nil {
		return nil
	}
	err := l.cfg.AuthorizeRetrieve(ctx, req)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotAuthorized):
		return err
	}
	return fmt.Errorf("orbit %s: %w: %w", req.Orbit, ErrNotAuthorized, err)
}

// Lookup returns a snapshot of the call parked in orbit o; in a cluster,
// also of one parked on another node, as last heard.
func (l *Lot) Lookup(o orbit.Orbit) (CallInfo, bool) {
	l.mu.Lock()
	c := l.byOrbit[o]
	var info CallInfo
	if c != nil {
		info = c.infoLocked()
	}
	l.mu.Unlock()
	if c == nil {
		return l.remoteLookup(o)
	}
	return info, true
}

// Calls returns a snapshot of every parked call, oldest first; in a
// cluster, those of every node.
func (l *Lot) Calls() []CallInfo {
	var remote []CallInfo
	if l.cfg.Cluster != nil {
		remote = l.cfg.Cluster.Calls()
	}
	l.mu.Lock()
	out := make([]CallInfo, 0, len(l.byOrbit)+len(remote))
	for _, c := range l.byOrbit {
		out = append(out, c.infoLocked())
	}
	l.mu.Unlock()
	out = append(out, remote...)
	slices.SortFunc(out, func(a, b CallInfo) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Orbit, b.Orbit))
	})
	return out
}

// Len returns the number of calls parked in this lot (not on other nodes).
func (l *Lot) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byOrbit)
}

// Observe registers o for every event from now on and returns a function
// that unregisters it. In a cluster, o also gets the other nodes' events
// (CallInfo.Node set), from another goroutine than the lot's own.
func (l *Lot) Observe(o Observer) (stop func()) {
	stopLocal := l.events.add(o)
	if l.cfg.Cluster == nil {
		return stopLocal
	}
	stopRemote := l.cfg.Cluster.Follow(o)
	return func() {
		stopLocal()
		stopRemote()
	}
}

// Recall rings the parker of the call in orbit o now, as if its pickup
// timeout had passed: the operator's "send it back". A call already
// ringing is left as it is. ErrNotParked when no call waits there,
// ErrUnknownOrbit for an orbit in none of the lot's ranges, and in a
// cluster an *ElsewhereError (Addr empty) when another node holds the
// call: that node's lot must be asked.
func (l *Lot) Recall(o orbit.Orbit) error {
	l.mu.Lock()
	c := l.byOrbit[o]
	if c != nil && c.state == Parked && c.timer.Stop() {
		c.startRingingLocked()
	}
	l.mu.Unlock()
	if c == nil {
		return l.notHere(o)
	}
	return nil
}

// Drop hangs up the call parked in orbit o: the operator's "hang up". It
// ends as Dropped whatever it was doing (a ringing recall or fallback is
// cancelled), its orbit is free, and Drop returns once its leg was told to
// hang up. The errors are Recall's.
func (l *Lot) Drop(o orbit.Orbit) error {
	l.mu.Lock()
	c := l.byOrbit[o]
	if c != nil {
		c.endLocked(Dropped)
	}
	l.mu.Unlock()
	if c == nil {
		return l.notHere(o)
	}
	l.release(o)
	c.hangupLeg()
	return nil
}

// notHere is the error of an operator's request for an orbit whose call
// this lot does not hold.
func (l *Lot) notHere(o orbit.Orbit) error {
	if info, ok := l.remoteLookup(o); ok {
		return &ElsewhereError{Orbit: o, Node: info.Node}
	}
	if !l.knows(o) {
		return fmt.Errorf("orbit %q: %w", o, ErrUnknownOrbit)
	}
	return fmt.Errorf("orbit %s: %w", o, ErrNotParked)
}

// Shutdown stops taking calls (Park returns ErrClosed) and recalls every
// parked call at once: one ring of the parker, then the fallback, else the
// call is dropped. In a cluster it first hands the calls with Portable legs
// to the other nodes (Cluster.HandOver), which continue them as if this
// node had died, and recalls only those none took: restarting the nodes one
// by one rings nobody. It returns when every call has ended or moved and
// every event has been delivered. If ctx ends first, the calls still in the
// lot are dropped (their legs hung up) and Shutdown returns ctx's error
// once that is done; ringing recalls are cancelled, and Shutdown waits for
// the Dialer to return, so a Dialer must honour its context. Calling it
// again waits again.
func (l *Lot) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	first := !l.closing
	l.closing = true
	stopTakeOver := l.stopTakeOver
	l.stopTakeOver = nil
	l.mu.Unlock()
	if first {
		if stopTakeOver != nil {
			stopTakeOver()
		}
		l.takers.Wait() // a call taken over now is in byOrbit, handed on below
		l.handOver(ctx)
		l.mu.Lock()
		for _, c := range l.byOrbit {
			if c.state == Parked && c.timer.Stop() {
				c.startRingingLocked()
			}
		}
		l.checkDrainedLocked()
		l.mu.Unlock()
	}

	var err error
	select {
	case <-l.drained:
	case <-ctx.Done():
		err = ctx.Err()
		l.dropAll()
	}
	l.ringers.Wait()
	l.events.wait()
	return err
}

// dropAll ends every call still in the lot as Dropped, cancels its ringing
// and hangs up its leg. Shutdown's time has run out by then, so the legs are
// hung up all at once, each given dropHangupTimeout: one after another, a
// hundred parties whose phones had gone would have held the exit for a
// hundred hang-up timeouts.
func (l *Lot) dropAll() {
	l.mu.Lock()
	var legs []*Call
	for _, c := range l.byOrbit {
		c.endLocked(Dropped)
		legs = append(legs, c)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range legs {
		l.release(c.orbit)
		wg.Go(func() { c.hangupLegWithin(dropHangupTimeout) })
	}
	wg.Wait()
}

func (l *Lot) isClosing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closing
}

// checkDrainedLocked closes drained once a closing lot is empty.
func (l *Lot) checkDrainedLocked() {
	if l.closing && len(l.byOrbit) == 0 {
		select {
		case <-l.drained:
		default:
			close(l.drained)
		}
	}
}

// release gives an orbit back. It runs outside l.mu: a shared allocator may
// take a network round trip. A failure cannot be handed to anyone, so it is
// logged; the in-memory allocator never fails here.
func (l *Lot) release(o orbit.Orbit) {
	if err := l.orbits.Release(context.Background(), o); err != nil {
		l.log.Warn("releasing orbit failed", "orbit", o, "err", err)
	}
}

// publish queues an event; l.mu must be held so the queue order is the order
// of the changes.
func (l *Lot) publish(e Event) {
	e.Time = time.Now()
	l.events.push(e)
}

func newParkID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
