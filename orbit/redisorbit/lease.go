package redisorbit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
)

// join stores the table if Redis has none, checks it against ours, and
// starts a new incarnation. recovering says the node had joined an
// earlier generation of the lot that Redis has since lost: a table it
// creates then refuses new claims for one lease, time for every node
// holding calls to claim their orbits back (reassert) before anyone else
// can take them.
func (a *Allocator) join(ctx context.Context, recovering bool) error {
	var settle time.Duration
	if recovering {
		settle = a.cfg.Lease
	}
	args := make([]any, 0, 4+len(a.orbits))
	args = append(args, a.spec, a.cfg.Policy.String(), newGeneration(), settle.Milliseconds())
	for _, o := range a.orbits {
		args = append(args, o)
	}
	have, err := a.s.init.Run(ctx, a.rdb, a.keys, args...).Slice()
	if err != nil {
		return a.unavailable(ctx, err)
	}
	if len(have) != 4 {
		return fmt.Errorf("redisorbit: init returned %d values", len(have))
	}
	spec, _ := have[0].(string)
	policy, _ := have[1].(string)
	if spec != a.spec {
		return &MismatchError{Cluster: a.cfg.Cluster, Field: "orbits", Theirs: spec, Ours: a.spec}
	}
	if policy != a.cfg.Policy.String() {
		return &MismatchError{Cluster: a.cfg.Cluster, Field: "policy", Theirs: policy, Ours: a.cfg.Policy.String()}
	}
	if created, _ := have[3].(int64); created == 1 {
		a.cfg.Logger.Info("orbit table stored in Redis", "cluster", a.cfg.Cluster, "orbits", a.spec, "settle", settle)
	}
	a.mu.Lock()
	advertise := a.cfg.Advertise
	a.mu.Unlock()
	sent := time.Now()
	got, err := a.s.join.Run(ctx, a.rdb, a.keys, a.cfg.Node, advertise, a.cfg.Lease.Milliseconds()).StringSlice()
	if err != nil {
		return a.unavailable(ctx, err)
	}
	if len(got) != 2 {
		return fmt.Errorf("redisorbit: join returned %d values", len(got))
	}
	a.mu.Lock()
	a.epoch, a.generation = got[0], got[1]
	a.renewedAt, a.heardAt = sent, sent
	a.mu.Unlock()
	a.cfg.Logger.Info("joined cluster", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "epoch", got[0])
	return nil
}

// recover brings the node back after a script said its incarnation is
// over: fenced (its lease ran out: every orbit it held is lost), or the
// lot reset (Redis lost it: the node claims its orbits back, and loses
// those another node took first). seen is the epoch the failed script
// ran under: if another goroutine has recovered since, there is nothing
// to do.
func (a *Allocator) recover(ctx context.Context, seen, code string) error {
	a.recoverMu.Lock()
	defer a.recoverMu.Unlock()
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	if a.epoch != seen {
		a.mu.Unlock()
		return nil // recovered already
	}
	var lost []orbit.Orbit
	if code == redislot.CodeFenced {
		for o := range a.held {
			lost = append(lost, o)
		}
		clear(a.held)
	}
	clear(a.releasing) // freed with the lease, or with the lot Redis lost
	a.ahead, a.aheadUsed, a.aheadKept, a.lowFree = nil, nil, nil, false
	a.epoch = ""
	a.mu.Unlock()
	a.cfg.Logger.Warn("cluster incarnation ended", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "epoch", seen, "reason", reasonOf(code))
	a.lose(lost, code)
	if err := a.join(ctx, code != redislot.CodeFenced); err != nil {
		return err
	}
	if code == redislot.CodeFenced {
		return nil
	}
	return a.reassert(ctx)
}

// reassert claims again, in a reset lot, the orbits the node's calls sit
// in; those another node took first are lost.
func (a *Allocator) reassert(ctx context.Context) error {
	held := a.heldOrbits()
	if len(held) == 0 {
		return nil
	}
	epoch, gen, err := a.incarnation()
	if err != nil {
		return err
	}
	args := []any{a.cfg.Node, epoch, gen}
	for _, o := range held {
		args = append(args, string(o))
	}
	taken, err := a.s.reassert.Run(ctx, a.rdb, a.keys, args...).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return a.unavailable(ctx, err)
	}
	lost := make([]orbit.Orbit, 0, len(taken))
	a.mu.Lock()
	for _, o := range taken {
		delete(a.held, orbit.Orbit(o))
		lost = append(lost, orbit.Orbit(o))
	}
	a.mu.Unlock()
	a.cfg.Logger.Info("orbits reasserted", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "kept", len(held)-len(lost), "lost", len(lost))
	a.lose(lost, redislot.CodeReset)
	return nil
}

// lose tells OnLost, on a goroutine Close waits for.
func (a *Allocator) lose(lost []orbit.Orbit, code string) {
	if len(lost) == 0 {
		return
	}
	a.cfg.Logger.Warn("orbits lost", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "orbits", lost, "reason", reasonOf(code))
	if a.cfg.OnLost != nil {
		a.losing.Add(1) // Stalled until the lot has let the calls go
		a.wg.Go(func() {
			defer a.losing.Add(-1)
			a.cfg.OnLost(lost)
		})
	}
}

// renewLoop renews the lease every third of it, and reaps the nodes whose
// lease ran out every reapEvery. A failed renewal is retried at the next
// tick: the lease outlives two missed ones.
func (a *Allocator) renewLoop() {
	every := a.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	// Reap often enough that a dead node's orbits are free within about
	// half a second of its lease (CLUSTER.md 6: lease + 1 s); a reap that
	// finds nobody dead is one sorted-set read.
	reaper := time.NewTicker(min(every, reapEvery))
	defer reaper.Stop()
	var failingSince time.Time
	for {
		select {
		case <-a.stop:
			return
		case <-reaper.C:
			a.reapNow()
			continue
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := a.renew(ctx)
		cancel()
		a.tried()
		if err == nil {
			a.renewed.Add(1)
		} else {
			a.renewFailed.Add(1)
		}
		switch {
		case err == nil && !failingSince.IsZero():
			a.cfg.Logger.Info("Redis reachable again", "cluster", a.cfg.Cluster, "after", time.Since(failingSince).Round(time.Millisecond))
			failingSince = time.Time{}
		case err != nil && failingSince.IsZero():
			failingSince = time.Now()
			a.cfg.Logger.Warn("lease renewal failed", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "err", err)
		case err != nil:
			a.cfg.Logger.Debug("lease renewal failed", "cluster", a.cfg.Cluster, "node", a.cfg.Node, "err", err)
		}
	}
}

// renew extends the lease once, recovering when the incarnation is over.
func (a *Allocator) renew(ctx context.Context) error {
	a.mu.Lock()
	epoch, gen := a.epoch, a.generation
	a.mu.Unlock()
	if epoch == "" {
		// Never joined, or a recovery failed: try again from the start.
		return a.recover(ctx, "", redislot.CodeReset)
	}
	sent := time.Now()
	err := a.s.renew.Run(ctx, a.rdb, a.keys, a.cfg.Node, epoch, gen, a.cfg.Lease.Milliseconds()).Err()
	switch code := redislot.ReplyCode(err); code {
	case "":
		if err != nil {
			return a.unavailable(ctx, err)
		}
		a.mu.Lock()
		if a.epoch == epoch {
			a.renewedAt, a.heardAt = sent, sent
		}
		a.mu.Unlock()
		return nil
	case redislot.CodeFenced, redislot.CodeReset, redislot.CodeNoTable:
		return a.recover(ctx, epoch, code)
	default:
		return fmt.Errorf("redisorbit: renew: %w", err)
	}
}

// tried notes that a renewal attempt has ended, whatever its result.
func (a *Allocator) tried() { a.triedAt.Store(int64(time.Since(a.born))) }

// Stalled reports whether this node may have lost its orbits without
// knowing it yet: no renewal attempt has ended for five sixths of a lease
// (attempts end at most two thirds of a lease apart while the node runs,
// Redis reachable or not, so only a paused process goes that long), or the
// lot is still being told which orbits it lost (Config.OnLost). A node
// resumed after a pause past its lease is thus Stalled from its first
// instant until its renewal has found it fenced and OnLost has returned.
func (a *Allocator) Stalled() bool {
	if a.losing.Load() > 0 {
		return true
	}
	return time.Duration(int64(time.Since(a.born))-a.triedAt.Load()) > a.cfg.Lease*5/6
}

// reapEvery bounds the time between two reaps by this node.
const reapEvery = 500 * time.Millisecond

// reapNow drops the nodes whose lease ran out.
func (a *Allocator) reapNow() {
	ctx, cancel := context.WithTimeout(context.Background(), reapEvery)
	defer cancel()
	reaped, err := a.s.reap.Run(ctx, a.rdb, a.keys).StringSlice()
	if err == nil && len(reaped) > 0 {
		a.cfg.Logger.Info("nodes reaped", "cluster", a.cfg.Cluster, "nodes", reaped)
	}
}

func reasonOf(code string) string {
	switch code {
	case redislot.CodeFenced:
		return "lease expired: another node may hold these orbits now"
	case redislot.CodeReset, redislot.CodeNoTable:
		return "Redis lost the lot"
	}
	return code
}

// newGeneration names a new table in Redis, so a node can tell a lot
// re-created after Redis lost it from the one it joined.
func newGeneration() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
