package redispark

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// follow listens to the lot's events channel. Pub/sub drops what is said
// while a subscriber is away, so after every (re)subscription the node
// reads the lot afresh and tells its observers what changed meanwhile.
func (d *Directory) follow() {
	for {
		msg, err := d.sub.Receive(d.ctx)
		if err != nil {
			if d.ctx.Err() != nil {
				return
			}
			d.redisErrors.Add(1)
			d.log.Debug("lot events: receive failed; resubscribing", "err", err)
			select {
			case <-d.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				d.resync()
			}
		case *redis.Message:
			d.apply([]byte(m.Payload))
		}
	}
}

// apply takes in one message of another node.
func (d *Directory) apply(payload []byte) {
	if bytes.Contains(payload, d.ownTag) {
		return // our own: every message names its node, and ours we know
	}
	m, err := parseMessage(payload)
	if err != nil {
		d.log.Warn("lot events: message skipped", "err", err)
		return
	}
	switch m.Kind {
	case "sync":
		d.resync()
	case "node-down":
		orphans, _ := orbitList(m.Orphans) // checked by parseMessage
		d.nodeDown(m.Node, orphans)
		d.claimShare(orphans, m.Node)
	case "handover":
		orphans, _ := orbitList(m.Orphans)
		d.claimShare(orphans, m.Node)
	case "taken":
		d.taken(m)
	case "lost":
		orbits, _ := orbitList(m.Orbits)
		d.lost(orbits)
	case "event":
		e := m.Event.event()
		d.fmu.Lock()
		cur, had := d.remote[e.Call.Orbit]
		switch {
		case e.Kind != park.EventEnded:
			d.remote[e.Call.Orbit] = e.Call
		case had && cur.ParkID == e.Call.ParkID:
			delete(d.remote, e.Call.Orbit)
		}
		d.fmu.Unlock()
		d.deliver(e)
	}
}

// nodeDown ends, for the observers, the calls of a node the scripts
// dropped (its lease ran out, it rejoined, or it left), but those left as
// orphans: another node takes them over, and they wait on meanwhile.
func (d *Directory) nodeDown(node string, orphans []orbit.Orbit) {
	d.fmu.Lock()
	var gone []park.CallInfo
	for o, c := range d.remote {
		if c.Node == node && !slices.Contains(orphans, o) {
			gone = append(gone, c)
			delete(d.remote, o)
		}
	}
	d.fmu.Unlock()
	d.endLost(gone, nil)
}

// lost ends, for the observers, the calls of orphans nobody took over.
func (d *Directory) lost(orbits []orbit.Orbit) {
	d.fmu.Lock()
	var gone []park.CallInfo
	for _, o := range orbits {
		if c, ok := d.remote[o]; ok {
			gone = append(gone, c)
			delete(d.remote, o)
		}
	}
	d.fmu.Unlock()
	d.endLost(gone, errNotTaken)
}

func (d *Directory) endLost(gone []park.CallInfo, why error) {
	slices.SortFunc(gone, func(a, b park.CallInfo) int { return a.Since.Compare(b.Since) })
	now := time.Now()
	for _, c := range gone {
		c.State, c.Outcome = park.Ended, park.Lost
		d.deliver(park.Event{Kind: park.EventEnded, Time: now, Call: c, Outcome: park.Lost, Err: why})
	}
}

// resync reads every call of the lot and tells the observers what changed
// since they last heard.
func (d *Directory) resync() {
	ctx, cancel := context.WithTimeout(d.ctx, writeTimeout)
	defer cancel()
	flat, err := d.calls.Run(ctx, d.rdb, d.keys).StringSlice()
	if err != nil && err != redis.Nil {
		d.redisErrors.Add(1)
		d.log.Debug("lot events: reading the lot failed", "err", err)
		return
	}
	fresh := make(map[orbit.Orbit]park.CallInfo, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		var r record
		if err := json.Unmarshal([]byte(flat[i+1]), &r); err != nil || r.Node == "" {
			d.log.Warn("lot events: record skipped", "orbit", flat[i], "err", err)
			continue
		}
		if r.Node == d.node {
			continue
		}
		fresh[orbit.Orbit(flat[i])] = r.info()
	}
	d.fmu.Lock()
	old := d.remote
	d.remote = fresh
	d.fmu.Unlock()

	now := time.Now()
	var events []park.Event
	for o, c := range old {
		if n, ok := fresh[o]; !ok || n.ParkID != c.ParkID {
			c.State = park.Ended
			events = append(events, park.Event{Kind: park.EventEnded, Time: now, Call: c})
		}
	}
	for o, c := range fresh {
		prev, ok := old[o]
		switch {
		case !ok || prev.ParkID != c.ParkID:
			events = append(events, park.Event{Kind: park.EventParked, Time: now, Call: c})
		case prev.State != c.State && c.State != park.Parked:
			events = append(events, park.Event{Kind: park.EventRinging, Time: now, Call: c, Attempt: c.Attempts})
		}
	}
	for _, e := range events {
		d.deliver(e)
	}
}

func (d *Directory) deliver(e park.Event) {
	d.fmu.Lock()
	followers := d.followers
	d.fmu.Unlock()
	for _, o := range followers {
		(*o).Observe(e)
	}
}
