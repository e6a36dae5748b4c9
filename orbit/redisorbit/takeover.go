package redisorbit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
)

// A call outlives its node (CLUSTER.md 10-11). When a node's lease runs
// out, or it stops and hands its calls over, each orbit whose call another
// node can continue (its record carries a handoff, park/redispark) is left
// as an orphan instead of being freed: held by nobody, its record kept.
// A live node claims it with TakeOver, fenced like any claim, so that
// exactly one node continues the call; one that nobody claims within 15 s
// is freed and its call counted lost.

// Orphan is an orbit whose call waits for a node to take it over.
type Orphan struct {
	Orbit orbit.Orbit
	From  string        // the node it came from
	Age   time.Duration // since it was left, by Redis' clock
}

// TakeOver claims orphan o for this node. ok is false when o is no orphan
// (another node took it first, or it was freed). from is the node the call
// came from; record its call's record as that node last wrote it.
func (a *Allocator) TakeOver(ctx context.Context, o orbit.Orbit) (from, record string, ok bool, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	epoch, gen, err := a.incarnation()
	if err != nil {
		return "", "", false, err
	}
	res, err := a.s.takeover.Run(ctx, a.rdb, a.keys, a.cfg.Node, epoch, gen, string(o)).StringSlice()
	switch {
	case errors.Is(err, redis.Nil):
		return "", "", false, nil
	case redislot.ReplyCode(err) != "":
		return "", "", false, fmt.Errorf("%w: taking over orbit %s: %s", orbit.ErrUnavailable, o, redislot.ReplyCode(err))
	case err != nil:
		return "", "", false, a.unavailable(ctx, err)
	case len(res) != 2:
		return "", "", false, fmt.Errorf("redisorbit: takeover returned %d values", len(res))
	}
	a.mu.Lock()
	a.held[o] = struct{}{}
	a.mu.Unlock()
	return res[0], res[1], true, nil
}

// HandOver leaves the given orbits, held by this node, as orphans for
// other nodes to take over, when the node stops: those whose call's record
// carries a handoff. It returns the orbits it left; they are no longer
// this node's.
func (a *Allocator) HandOver(ctx context.Context, orbits []orbit.Orbit) ([]orbit.Orbit, error) {
	if len(orbits) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	epoch, gen, err := a.incarnation()
	if err != nil {
		return nil, err
	}
	args := []any{a.cfg.Node, epoch, gen}
	for _, o := range orbits {
		args = append(args, string(o))
	}
	res, err := a.s.handover.Run(ctx, a.rdb, a.keys, args...).StringSlice()
	switch {
	case errors.Is(err, redis.Nil):
	case redislot.ReplyCode(err) != "":
		return nil, fmt.Errorf("%w: handing orbits over: %s", orbit.ErrUnavailable, redislot.ReplyCode(err))
	case err != nil:
		return nil, a.unavailable(ctx, err)
	}
	out := make([]orbit.Orbit, 0, len(res))
	a.mu.Lock()
	for _, o := range res {
		delete(a.held, orbit.Orbit(o))
		out = append(out, orbit.Orbit(o))
	}
	a.mu.Unlock()
	return out, nil
}

// Orphans lists the calls waiting to be taken over, after reaping the
// nodes whose lease ran out.
func (a *Allocator) Orphans(ctx context.Context) ([]Orphan, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	flat, err := a.s.orphans.Run(ctx, a.rdb, a.keys).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, a.unavailable(ctx, err)
	}
	out := make([]Orphan, 0, len(flat)/3)
	for i := 0; i+2 < len(flat); i += 3 {
		ms, _ := strconv.ParseInt(flat[i+2], 10, 64)
		out = append(out, Orphan{Orbit: orbit.Orbit(flat[i]), From: flat[i+1], Age: time.Duration(ms) * time.Millisecond})
	}
	return out, nil
}
