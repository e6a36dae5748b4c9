package redispark

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park"
)

// Takeover (CLUSTER.md 10-12). A node that dies or stops leaves its calls
// that can be continued as orphans (orbit/redisorbit). Every live node with
// a lot that takes calls over (park.Config.Adopter) claims its share at
// once: the orphans are split by a hash of the orbit over the live nodes,
// so a hundred calls spread over the survivors. Whatever is left after
// claimGrace (a survivor that died too, a message missed) any node claims
// at its next sweep. A claim is one fenced script, so each call is
// continued by one node; the lot then continues it (park.Lot's takeover)
// and tells of it (EventMoved), which rewrites the record under the new
// node.

const (
	// claimGrace is how long an orphan is left to the node whose share it
	// is before any node claims it.
	claimGrace = time.Second
	// sweepEvery is how often a node looks for orphans nobody claimed.
	sweepEvery = time.Second
	// takeTimeout bounds one takeover: the party's answer to the
	// re-INVITE (over UDP, Timer B is 32 s).
	takeTimeout = 40 * time.Second
	// claimsAtOnce bounds the takeovers a node runs at once.
	claimsAtOnce = 32
	// handOverWait bounds how long a stopping node waits for the others to
	// claim its calls before it takes the rest back and recalls them.
	handOverWait = 5 * time.Second
)

// errNotTaken is the reason of a call no node took over in time.
var errNotTaken = errors.New("redispark: no node took the call over")

// TakeOver has the lot continue its share of the calls of nodes that die
// or stop, until stop.
func (d *Directory) TakeOver(take func(context.Context, park.CallInfo) error) (stop func()) {
	d.tmu.Lock()
	d.take = take
	d.tmu.Unlock()
	done := make(chan struct{})
	d.wg.Go(func() { d.sweep(done) })
	var once sync.Once
	return func() {
		once.Do(func() {
			d.tmu.Lock()
			d.take = nil
			d.tmu.Unlock()
			close(done)
		})
	}
}

// sweep claims, every sweepEvery, the orphans this node should take: its
// share at once (a message it missed), any other once it has seen it
// unclaimed for claimGrace.
func (d *Directory) sweep(done <-chan struct{}) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	seen := make(map[orbit.Orbit]time.Time) // when this node first saw each orphan
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, writeTimeout)
		orphans, err := d.orbits.Orphans(ctx)
		cancel()
		if err != nil {
			d.redisErrors.Add(1)
			d.log.Debug("takeover: listing orphans failed", "err", err)
			continue
		}
		var names []string
		now := time.Now()
		current := make(map[orbit.Orbit]time.Time, len(orphans))
		for _, o := range orphans {
			if names == nil {
				names = d.liveNodes("")
			}
			first, ok := seen[o.Orbit]
			if !ok {
				first = now
			}
			current[o.Orbit] = first
			if now.Sub(first) >= claimGrace || shareOf(o.Orbit, names, o.From) == d.node {
				d.claimLater(o.Orbit)
			}
		}
		seen = current
	}
}

// claimShare claims the orphans of from that are this node's share.
func (d *Directory) claimShare(orphans []orbit.Orbit, from string) {
	if len(orphans) == 0 || !d.taking() {
		return
	}
	names := d.liveNodes(from)
	for _, o := range orphans {
		if shareOf(o, names, from) == d.node {
			d.claimLater(o)
		}
	}
}

// liveNodes names the live nodes as lately read, but not skip.
func (d *Directory) liveNodes(skip string) []string {
	var names []string
	for _, p := range d.orbits.RecentPeers(d.ctx) {
		if p.Node != skip {
			names = append(names, p.Node)
		}
	}
	if !slices.Contains(names, d.node) {
		names = append(names, d.node) // this node is alive, whatever the list says
	}
	slices.Sort(names)
	return names
}

// shareOf is the node whose share orphan o is: a hash of the orbit over
// the live nodes, so that every node computes the same split.
func shareOf(o orbit.Orbit, names []string, from string) string {
	names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == from })
	if len(names) == 0 {
		return ""
	}
	h := fnv.New32a()
	h.Write([]byte(o))
	return names[h.Sum32()%uint32(len(names))]
}

func (d *Directory) taking() bool {
	d.tmu.Lock()
	defer d.tmu.Unlock()
	return d.take != nil
}

// claimLater claims o on a goroutine of its own, unless a claim of o is
// under way here already.
func (d *Directory) claimLater(o orbit.Orbit) {
	d.tmu.Lock()
	take := d.take
	if take == nil || d.claiming[o] {
		d.tmu.Unlock()
		return
	}
	d.claiming[o] = true
	d.tmu.Unlock()
	d.wg.Go(func() {
		defer func() {
			d.tmu.Lock()
			delete(d.claiming, o)
			d.tmu.Unlock()
		}()
		select {
		case d.claims <- struct{}{}:
			defer func() { <-d.claims }()
		case <-d.ctx.Done():
			return
		}
		d.claim(o, take)
	})
}

// claim takes orphan o over, if it still is one: the lot continues the
// call. A lot that cannot (it is shutting down) gives it back as an
// orphan, for another node.
func (d *Directory) claim(o orbit.Orbit, take func(context.Context, park.CallInfo) error) {
	ctx, cancel := context.WithTimeout(d.ctx, takeTimeout)
	defer cancel()
	from, rec, ok, err := d.orbits.TakeOver(ctx, o)
	if err != nil || !ok {
		if err != nil {
			d.log.Debug("takeover: claim failed", "orbit", o, "err", err)
		}
		return
	}
	var r record
	if err := json.Unmarshal([]byte(rec), &r); err != nil {
		d.log.Warn("takeover: the call's record is unreadable; it is lost", "orbit", o, "err", err)
	}
	info := r.info()
	info.Orbit, info.Node = o, from
	if info.Handoff, err = d.seal.open(r.Handoff, o, r.ParkID); err != nil {
		// Not this node's to read: no dialog to continue, no BYE to send.
		// The lot ends a call without a handoff as lost, once, for every
		// node to hear, without asking its Adopter.
		d.log.Error("takeover: the call's handoff cannot be read here (check -cluster-key on every node); the call is lost",
			"orbit", o, "park_id", r.ParkID, "from", from, "err", err)
		info.Handoff = nil
	}
	d.fmu.Lock()
	heard, had := d.remote[o]
	delete(d.remote, o) // this lot's call now: not also another node's
	d.fmu.Unlock()
	d.log.Info("taking a call over", "orbit", o, "park_id", info.ParkID, "from", from)
	if err := take(ctx, info); err != nil {
		d.log.Info("takeover: the lot took nothing; the call goes to another node", "orbit", o, "err", err)
		if had {
			d.fmu.Lock()
			d.remote[o] = heard
			d.fmu.Unlock()
		}
		if _, err := d.orbits.HandOver(ctx, []orbit.Orbit{o}); err != nil {
			d.redisErrors.Add(1)
			d.log.Warn("takeover: giving the call back failed; its orbit is freed when this node leaves", "orbit", o, "err", err)
		}
	}
}

// taken hears that a node claimed orphans: a stopping node waits for it.
func (d *Directory) taken(m message) {
	if m.From != d.node {
		return
	}
	d.tmu.Lock()
	ch := d.handing
	d.tmu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default: // more messages than calls handed: not ours to wait for
		}
	}
}

// HandOver leaves calls of this node for the others to take over, as when
// it stops: their records are written as they are now, their orbits left
// as orphans. It waits (within ctx and handOverWait) until each has been
// claimed; those nobody claimed it takes back.
func (d *Directory) HandOver(ctx context.Context, calls []park.CallInfo) (map[string]string, error) {
	peers, err := d.orbits.Peers(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(peers, func(p redisorbit.Peer) bool { return p.Node != d.node }) {
		return nil, nil // alone: nobody to hand them to
	}
	parkIDs := make(map[orbit.Orbit]string, len(calls))
	writes := make([]write, 0, len(calls))
	orbits := make([]orbit.Orbit, 0, len(calls))
	for _, c := range calls {
		rec, _ := json.Marshal(d.recordOf(c))
		writes = append(writes, write{orbit: c.Orbit, rec: string(rec)})
		orbits = append(orbits, c.Orbit)
		parkIDs[c.Orbit] = c.ParkID
	}
	if err := d.send(writes); err != nil {
		return nil, err
	}
	ch := make(chan message, len(calls)+1)
	d.tmu.Lock()
	d.handing = ch
	d.tmu.Unlock()
	defer func() {
		d.tmu.Lock()
		d.handing = nil
		d.tmu.Unlock()
	}()
	handed, err := d.orbits.HandOver(ctx, orbits)
	if err != nil {
		return nil, err
	}
	pending := make(map[orbit.Orbit]bool, len(handed))
	for _, o := range handed {
		pending[o] = true
	}
	taken := make(map[string]string, len(handed))
	wait := time.NewTimer(handOverWait)
	defer wait.Stop()
	for len(pending) > 0 {
		var m message
		select {
		case m = <-ch:
		case <-wait.C:
		case <-ctx.Done():
		}
		if m.Kind == "" {
			break
		}
		got, _ := orbitList(m.Orbits)
		for _, o := range got {
			if pending[o] {
				delete(pending, o)
				taken[parkIDs[o]] = m.Node
			}
		}
	}
	// Nobody claimed these in time: take them back (the lot recalls them),
	// unless a node claims one right now.
	back, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	for o := range pending {
		_, _, ok, err := d.orbits.TakeOver(back, o)
		switch {
		case err != nil:
			d.redisErrors.Add(1)
			d.log.Warn("handover: taking an unclaimed call back failed; it is lost if nobody claims it", "orbit", o, "err", err)
		case !ok:
			node, _, _, _ := d.orbits.Holder(back, o)
			taken[parkIDs[o]] = node
		}
	}
	return taken, nil
}
