package redisorbit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/orbit"
)

// The scripts against a real redis-server: what miniredis cannot vouch
// for (Redis' own Lua, EVALSHA after a restart, TIME in scripts).
func TestRealRedis(t *testing.T) {
	srv := redistest.Start(t)
	rs := ranges(t, "701-799", "*7101-*7199")
	start := func(name string, cfg Config) *Allocator {
		cfg.Client = srv.Client()
		cfg.Node = name
		cfg.Ranges = rs
		a, err := New(context.Background(), cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close(context.Background()) })
		return a
	}
	lost := make(chan []orbit.Orbit, 4)
	nodes := []*Allocator{
		start("a", Config{Lease: 2 * time.Second, OnLost: func(o []orbit.Orbit) { lost <- o }}),
		start("b", Config{Lease: 2 * time.Second, ClaimAhead: -1}), // refuses at once when Redis is gone
		start("c", Config{Lease: 2 * time.Second}),
	}

	t.Run("concurrent claims", func(t *testing.T) {
		var (
			mu  sync.Mutex
			got = map[orbit.Orbit]bool{}
			wg  sync.WaitGroup
		)
		for _, n := range nodes {
			for range 8 {
				wg.Go(func() {
					full := time.Time{}
					for {
						o, err := n.Allocate(context.Background())
						if errors.Is(err, orbit.ErrFull) {
							// Orbits claimed ahead by the other nodes come
							// back within a sync once the lot is nearly full.
							if full.IsZero() {
								full = time.Now()
							}
							if time.Since(full) > 2*aheadSync {
								return
							}
							time.Sleep(20 * time.Millisecond)
							continue
						}
						full = time.Time{}
						if err != nil {
							t.Errorf("allocate: %v", err)
							return
						}
						mu.Lock()
						if got[o] {
							t.Errorf("orbit %s handed out twice", o)
						}
						got[o] = true
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		require.Len(t, got, 198)
		for o := range got {
			released := false
			for _, n := range nodes {
				if n.Release(ctx(t), o) == nil {
					released = true
					break
				}
			}
			require.True(t, released, "orbit %s released by its holder", o)
		}
		for _, n := range nodes {
			require.NoError(t, n.flushReleases(ctx(t)))
		}
	})

	t.Run("restart empty, reassert", func(t *testing.T) {
		require.NoError(t, nodes[0].Reserve(ctx(t), "750"))
		srv.Stop()
		_, err := nodes[1].Allocate(ctx(t))
		require.ErrorIs(t, err, orbit.ErrUnavailable, "parks are refused while Redis is down")
		srv.Restart()
		require.Eventually(t, func() bool {
			node, _, ok, err := nodes[2].Holder(ctx(t), "750")
			return err == nil && ok && node == "a"
		}, 5*time.Second, 50*time.Millisecond, "a claims 750 back within a renewal")
		require.Eventually(t, func() bool {
			_, err := nodes[1].Allocate(ctx(t))
			return err == nil
		}, 5*time.Second, 100*time.Millisecond, "parks work again once the lot settled")
		require.ErrorIs(t, nodes[1].Reserve(ctx(t), "750"), orbit.ErrInUse)
		select {
		case o := <-lost:
			t.Fatalf("a lost %v", o)
		default:
		}
	})
}
