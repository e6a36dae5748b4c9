package redispark

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// resyncEvery is how often a node whose writes failed tries to write its
// calls again; with the allocator's renewal (a third of the lease) it
// bounds how long after Redis comes back the lot is whole again.
const resyncEvery = time.Second

// writeLinger is how long the writer gathers events before it sends them.
const writeLinger = 10 * time.Millisecond

// writeTimeout bounds one write of a record.
const writeTimeout = 2 * time.Second

// Config describes a Directory.
type Config struct {
	// Orbits is this node's share of the lot (its name, its lease and
	// fencing epoch, its Redis client). Required; give the lot the same
	// allocator as park.Config.Orbits.
	Orbits *redisorbit.Allocator
	// Logger receives the directory's diagnostics; nil discards them.
	Logger *slog.Logger
	// HandoffKey, when set, is the key (HandoffKeyLen bytes, random) the
	// cluster's nodes share to seal the handoff of each call (seal.go):
	// AES-256-GCM, bound to the call's record. Every node of a cluster
	// needs the same key: a node without it, or with another, cannot read
	// a sealed handoff, and a node with a key reads sealed ones only; a
	// call taken over from a handoff a node cannot read ends as park.Lost,
	// with an error logged. Nil leaves handoffs in the clear.
	HandoffKey []byte
}

// ErrInvalidConfig is wrapped by every configuration error of New.
var ErrInvalidConfig = errors.New("invalid redispark configuration")

// Directory is the park.Cluster of a lot kept in Redis: it writes the
// record of each call parked on this node where every node reads it,
// publishes the lot's events, and follows the other nodes'. Close it
// before the allocator.
type Directory struct {
	orbits  *redisorbit.Allocator
	rdb     redis.UniversalClient
	keys    []string
	channel string
	node    string
	log     *slog.Logger
	seal    *sealer // nil: handoffs in the clear
	record  *redis.Script
	calls   *redis.Script

	ctx    context.Context
	cancel context.CancelFunc
	sub    *redis.PubSub
	wg     sync.WaitGroup

	wmu     sync.Mutex
	pending []park.Event
	local   map[orbit.Orbit]park.CallInfo // this node's calls, from its events
	dirty   bool                          // a write failed: write every local call again
	wake    chan struct{}
	written string // the incarnation (epoch and generation) the records were written under
	ownTag  []byte // `"node":"<us>"`, in every message this node publishes

	// redisErrors counts the requests to Redis that failed (Collector).
	redisErrors atomic.Uint64

	fmu       sync.Mutex
	remote    map[orbit.Orbit]park.CallInfo // the other nodes' calls, as last heard
	followers []*park.Observer

	tmu      sync.Mutex // takeover.go
	take     func(context.Context, park.CallInfo) error
	claiming map[orbit.Orbit]bool
	handing  chan message // "taken" messages, while HandOver waits for them
	claims   chan struct{}
}

var _ park.Cluster = (*Directory)(nil)

// New starts the directory: it subscribes to the lot's events and reads
// the other nodes' calls.
func New(cfg Config) (*Directory, error) {
	if cfg.Orbits == nil {
		return nil, fmt.Errorf("%w: Config.Orbits is required", ErrInvalidConfig)
	}
	seal, err := newSealer(cfg.HandoffKey, cfg.Orbits.Cluster())
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Directory{
		orbits:  cfg.Orbits,
		rdb:     cfg.Orbits.Client(),
		keys:    []string{redislot.Prefix(cfg.Orbits.Cluster())},
		channel: redislot.Events(cfg.Orbits.Cluster()),
		node:    cfg.Orbits.Node(),
		log:     log,
		seal:    seal,
		record:  script("record"),
		calls:   script("calls"),
		ctx:     ctx,
		cancel:  cancel,
		local:   make(map[orbit.Orbit]park.CallInfo),
		remote:  make(map[orbit.Orbit]park.CallInfo),
		wake:    make(chan struct{}, 1),

		claiming: make(map[orbit.Orbit]bool),
		claims:   make(chan struct{}, claimsAtOnce),
	}
	epoch, gen := d.orbits.Incarnation()
	d.written = epoch + "/" + gen
	d.ownTag, _ = json.Marshal(d.node)
	d.ownTag = append([]byte(`"node":`), d.ownTag...)
	d.sub = d.rdb.Subscribe(ctx, d.channel)
	d.wg.Go(d.follow)
	d.wg.Go(d.write)
	return d, nil
}

func script(name string) *redis.Script {
	b, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic("redispark: missing embedded script " + name) // a build without the lua files
	}
	return redislot.Script(strings.TrimSpace(string(b)))
}

// Close stops following and writing. Events the lot has not yet written
// are dropped: a lot is shut down (every call gone) before its directory.
func (d *Directory) Close() error {
	d.cancel()
	_ = d.sub.Close() // a pending Receive does not watch the context
	d.wg.Wait()
	return nil
}

// Observe takes one of this node's events to write and publish, in order,
// from a goroutine of the directory's.
func (d *Directory) Observe(e park.Event) {
	d.wmu.Lock()
	switch {
	case e.Kind == park.EventEnded:
		delete(d.local, e.Call.Orbit)
	case e.Call.State == park.Moved:
		// Gone to another node, which writes and tells of it (or, fenced,
		// no longer this node's to write): nothing to send.
		delete(d.local, e.Call.Orbit)
		d.wmu.Unlock()
		return
	default:
		d.local[e.Call.Orbit] = e.Call
	}
	if !d.dirty {
		d.pending = append(d.pending, e)
	}
	d.wmu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// write writes the pending events in order; after a failure it writes
// every local call again, as they are then, until Redis answers.
func (d *Directory) write() {
	t := time.NewTicker(resyncEvery)
	defer t.Stop()
	linger := time.NewTimer(0)
	<-linger.C
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.wake:
			// Gather the events of a moment into one pipeline: under load
			// that is one round trip for many (CLUSTER.md 4 gives watchers
			// a second).
			linger.Reset(writeLinger)
			select {
			case <-d.ctx.Done():
				return
			case <-linger.C:
			}
		case <-t.C:
		}
		d.wmu.Lock()
		if epoch, gen := d.orbits.Incarnation(); epoch+"/"+gen != d.written {
			// The node rejoined, or Redis lost the lot and the allocator
			// re-created it: what was written is gone or no longer ours.
			d.written = epoch + "/" + gen
			d.dirty, d.pending = true, nil
		}
		batch, dirty := d.pending, d.dirty
		d.pending = nil
		d.wmu.Unlock()
		if dirty {
			if err := d.rewrite(); err != nil {
				d.redisErrors.Add(1)
				d.log.Debug("rewriting the node's calls failed", "err", err)
				continue
			}
			d.wmu.Lock()
			d.dirty = false
			d.wmu.Unlock()
			continue
		}
		if len(batch) == 0 {
			continue
		}
		if err := d.writeEvents(batch); err != nil {
			d.redisErrors.Add(1)
			d.log.Warn("sharing park events failed; the node's calls will be written again", "events", len(batch), "err", err)
			d.wmu.Lock()
			d.dirty, d.pending = true, nil
			d.wmu.Unlock()
		}
	}
}

// writeEvents stores the records the events leave and publishes them, in
// order, in one pipeline: under load one round trip carries many events.
func (d *Directory) writeEvents(batch []park.Event) error {
	writes := make([]write, 0, len(batch))
	for _, e := range batch {
		msg, _ := json.Marshal(message{Kind: "event", Node: d.node, Event: toWire(e, d.node)})
		switch e.Kind {
		case park.EventEnded:
			// The orbit's release deletes the record (in the same script
			// that frees it); an end is told whoever holds the orbit now,
			// since watchers match it by park ID. So a plain PUBLISH.
			writes = append(writes, write{msg: string(msg)})
			continue
		case park.EventUpdated:
			// Only the handoff changed: the record, told to nobody.
			rec, _ := json.Marshal(d.recordOf(e.Call))
			writes = append(writes, write{orbit: e.Call.Orbit, rec: string(rec)})
			continue
		}
		rec, _ := json.Marshal(d.recordOf(e.Call))
		writes = append(writes, write{orbit: e.Call.Orbit, rec: string(rec), msg: string(msg)})
	}
	return d.send(writes)
}

// rewrite writes every call of this node again, then tells the other nodes
// to read the lot afresh.
func (d *Directory) rewrite() error {
	d.wmu.Lock()
	writes := make([]write, 0, len(d.local)+1)
	for _, c := range d.local {
		rec, _ := json.Marshal(d.recordOf(c))
		writes = append(writes, write{orbit: c.Orbit, rec: string(rec)})
	}
	d.wmu.Unlock()
	sync, _ := json.Marshal(message{Kind: "sync", Node: d.node})
	return d.send(append(writes, write{msg: string(sync)}))
}

// recordOf is the record of c as this node writes it, its handoff sealed
// if the cluster has a key.
func (d *Directory) recordOf(c park.CallInfo) record {
	r := toRecord(c, d.node)
	r.Handoff = d.seal.seal(r.Handoff, c.Orbit, c.ParkID)
	return r
}

// write is one step of send: the record of the call in orbit (stored,
// fenced, with msg published if any), or with no orbit a plain PUBLISH of
// msg.
type write struct {
	orbit    orbit.Orbit
	rec, msg string
}

// send makes the writes, in order, in one run of the record script under
// this node's incarnation: under load one call carries many events.
func (d *Directory) send(writes []write) error {
	epoch, gen := d.orbits.Incarnation()
	if epoch == "" {
		return fmt.Errorf("%w: node %s is not in the cluster", orbit.ErrUnavailable, d.node)
	}
	ctx, cancel := context.WithTimeout(d.ctx, writeTimeout)
	defer cancel()
	args := make([]any, 0, 3+3*len(writes))
	args = append(args, d.node, epoch, gen)
	for _, w := range writes {
		args = append(args, string(w.orbit), w.rec, w.msg)
	}
	// Run: EVALSHA, and EVAL once if Redis restarted and forgot the script.
	return d.record.Run(ctx, d.rdb, d.keys, args...).Err()
}

// Locate says which other node holds o now and its advertised address.
//
// A call this node has heard of is answered from what it heard and the
// nodes' addresses it read at most a second ago, without a round trip: if
// that call has just left, its node answers the forwarded retrieve 404 as
// the holder would. Any other orbit is asked of Redis.
func (d *Directory) Locate(ctx context.Context, o orbit.Orbit) (string, string, error) {
	if heard, ok := d.Lookup(o); ok {
		for _, p := range d.orbits.RecentPeers(ctx) {
			if p.Node == heard.Node && p.Advertise != "" {
				return p.Node, p.Advertise, nil
			}
		}
	}
	node, addr, ok, err := d.orbits.Holder(ctx, o)
	if err != nil {
		return "", "", err
	}
	if !ok || node == d.node {
		return "", "", fmt.Errorf("orbit %s: %w", o, park.ErrNotParked)
	}
	return node, addr, nil
}

// Calls returns the other nodes' calls as last heard, oldest first.
func (d *Directory) Calls() []park.CallInfo {
	d.fmu.Lock()
	out := make([]park.CallInfo, 0, len(d.remote))
	for _, c := range d.remote {
		out = append(out, c)
	}
	d.fmu.Unlock()
	slices.SortFunc(out, func(a, b park.CallInfo) int { return a.Since.Compare(b.Since) })
	return out
}

// Lookup returns the call another node holds in o, as last heard.
func (d *Directory) Lookup(o orbit.Orbit) (park.CallInfo, bool) {
	d.fmu.Lock()
	defer d.fmu.Unlock()
	c, ok := d.remote[o]
	return c, ok
}

// Follow delivers the other nodes' events to o until stop.
func (d *Directory) Follow(o park.Observer) (stop func()) {
	entry := &o // an ObserverFunc does not compare
	d.fmu.Lock()
	d.followers = append(d.followers, entry)
	d.fmu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.fmu.Lock()
			defer d.fmu.Unlock()
			d.followers = slices.DeleteFunc(slices.Clone(d.followers), func(x *park.Observer) bool { return x == entry })
		})
	}
}
