package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/parktest"
)

// CLUSTER.md on the built program: three park servers sharing one lot on a
// real redis-server, killed and paused for real.

const clusterLease = 2 * time.Second

// startCluster starts redis-server and n nodes on it.
func startCluster(t *testing.T, n int, extra ...string) (*redistest.Server, []*parkServerProcess) {
	t.Helper()
	redisSrv := redistest.Start(t)
	var nodes []*parkServerProcess
	for i := range n {
		nodes = append(nodes, startNode(t, redisSrv, i, extra...))
	}
	return redisSrv, nodes
}

func startNode(t *testing.T, redisSrv *redistest.Server, i int, extra ...string) *parkServerProcess {
	t.Helper()
	ports := fmt.Sprintf("%d-%d", 15000+i*500, 15499+i*500)
	args := append([]string{"-listen", "127.0.0.1:0", "-rtp-ports", ports, "-redis", redisSrv.URL(),
		"-node", fmt.Sprintf("n%d", i+1), "-lease", clusterLease.String(), "-drain", "2s"}, extra...)
	p := runParkServer(t, args...)
	p.WaitLine(`msg="joined the cluster"`, 5*time.Second)
	return p
}

func clusterCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func parkURI(p *parkServerProcess) string                { return "sip:700@" + p.Addr }
func orbitURI(p *parkServerProcess, orbit string) string { return "sip:" + orbit + "@" + p.Addr }

// Parks spread over three nodes, many at once, never share an orbit; a
// call parked on one node is retrieved at another, audio both ways, the
// dialog with the node that holds it; racing retrieves have one winner; a
// BLF key at a third node lights for it.
func TestClusterOfThree(t *testing.T) {
	_, nodes := startCluster(t, 3, "-orbits", "1000-1499")
	ctx := clusterCtx(t)

	t.Run("parks never share an orbit", func(t *testing.T) {
		const perNode = 100
		var (
			mu     sync.Mutex
			orbits = map[string]string{}
			calls  []*parktest.Call
			wg     sync.WaitGroup
		)
		for i, n := range nodes {
			p := parktest.NewPhone(t, parktest.PhoneOptions{User: fmt.Sprintf("p%d", i)})
			for range perNode {
				wg.Go(func() {
					c, err := p.Call(ctx, parkURI(n), parktest.CallOptions{Mute: true})
					if err != nil {
						t.Errorf("park at %s: %v", n.Addr, err)
						return
					}
					mu.Lock()
					defer mu.Unlock()
					if prev, dup := orbits[c.Orbit()]; dup {
						t.Errorf("orbit %s given by %s and %s", c.Orbit(), prev, n.Addr)
					}
					orbits[c.Orbit()] = n.Addr
					calls = append(calls, c)
				})
			}
		}
		wg.Wait()
		require.Len(t, orbits, 3*perNode)
		for _, c := range calls {
			require.NoError(t, c.Hangup(ctx))
		}
	})

	t.Run("retrieve at another node", func(t *testing.T) {
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
		desk := parktest.NewPhone(t, parktest.PhoneOptions{User: "desk"})
		parked, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{})
		require.NoError(t, err)
		sub, err := desk.Subscribe(ctx, orbitURI(nodes[2], parked.Orbit()), "dialog", time.Hour)
		require.NoError(t, err)
		waitDialogState(t, sub, "confirmed") // BLF at node 3 shows the call parked on node 1

		talk, err := bob.Call(ctx, orbitURI(nodes[1], parked.Orbit()), parktest.CallOptions{})
		require.NoError(t, err)
		require.Contains(t, talk.Header("Contact"), nodes[0].Addr, "the dialog is with node 1")
		require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
		require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25), "audio both ways")
		waitDialogState(t, sub, "terminated")
		require.NoError(t, talk.Hangup(ctx))
		<-parked.Done()
		require.NoError(t, sub.Unsubscribe(ctx))
	})

	t.Run("racing retrieves on three nodes", func(t *testing.T) {
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		parked, err := alice.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		var (
			mu   sync.Mutex
			won  []*parktest.Call
			lost []int
			wg   sync.WaitGroup
		)
		for i, n := range append(nodes, nodes...) {
			p := parktest.NewPhone(t, parktest.PhoneOptions{User: fmt.Sprintf("r%d", i)})
			wg.Go(func() {
				c, err := p.Call(ctx, orbitURI(n, parked.Orbit()), parktest.CallOptions{Mute: true})
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					won = append(won, c)
					return
				}
				code, _ := statusCode(t, err)
				lost = append(lost, code)
			})
		}
		wg.Wait()
		require.Len(t, won, 1)
		require.Equal(t, []int{404, 404, 404, 404, 404}, lost)
		require.NoError(t, won[0].Hangup(ctx))
	})
}

// A node killed with SIGKILL: a retrieve forwarded to it fails within 2 s
// with 480; after its lease its orbits are free for the other nodes and a
// BLF watcher elsewhere sees its call end.
// Redis stopped: parks get 503 with Retry-After, a parked call keeps its
// music and is retrieved at its node; Redis started again, empty: the
// nodes claim their orbits back and parks work again, no orbit twice.
func TestClusterRedisStoppedAndStartedEmpty(t *testing.T) {
	redisSrv, nodes := startCluster(t, 2, "-policy", "lowest")
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	first, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{})
	require.NoError(t, err)
	second, err := alice.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	redisSrv.Stop()
	stopped := time.Now()
	// A node parks in the orbits it claimed ahead until a request to
	// Redis fails (the first one it makes after a park used one): then
	// it refuses every park.
	for {
		c, err := carol.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
		if err != nil {
			break
		}
		require.NoError(t, c.Hangup(ctx))
		require.Less(t, time.Since(stopped), 3*time.Second, "parks are refused once the node found Redis gone")
		time.Sleep(50 * time.Millisecond)
	}
	for range 2 {
		_, err = carol.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
		code, _ := statusCode(t, err)
		require.Equal(t, 503, code)
		var se *parktest.StatusError
		require.ErrorAs(t, err, &se)
		require.NotNil(t, se.Response.GetHeader("Retry-After"))
	}
	require.NoError(t, first.WaitReceived(ctx, first.Received()+10), "music goes on")

	redisSrv.Restart()
	var again *parktest.Call
	require.Eventually(t, func() bool {
		c, err := carol.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
		if err != nil {
			return false
		}
		again = c
		return true
	}, 15*time.Second, 250*time.Millisecond, "parks work again")
	require.NotEqual(t, first.Orbit(), again.Orbit(), "no orbit held twice")
	require.NotEqual(t, second.Orbit(), again.Orbit(), "no orbit held twice")

	talk, err := bob.Call(ctx, orbitURI(nodes[1], first.Orbit()), parktest.CallOptions{})
	require.NoError(t, err, "node 1's call, retrieved through node 2 after the restart")
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+10))
	for _, c := range []*parktest.Call{talk, second, again} {
		require.NoError(t, c.Hangup(ctx))
	}
}

// A node given other orbits than the cluster's does not start: exit 2,
// both tables named.
func TestClusterMismatchedOrbitsRefused(t *testing.T) {
	redisSrv, _ := startCluster(t, 1)
	var out, errOut strings.Builder
	code := run([]string{"-listen", "127.0.0.1:0", "-redis", redisSrv.URL(), "-node", "odd", "-orbits", "801-899"}, &out, &errOut)
	require.Equal(t, 2, code)
	require.Contains(t, errOut.String(), `"701-799"`)
	require.Contains(t, errOut.String(), `"801-899"`)

	errOut.Reset()
	code = run([]string{"-check", "-redis", redisSrv.URL(), "-orbits", "801-899"}, &out, &errOut)
	require.Equal(t, 2, code, "-check compares the tables too")
	require.Contains(t, errOut.String(), `"701-799"`)
}

func referredByHeaders(uri string) []sip.Header {
	return []sip.Header{sip.NewHeader("Referred-By", "<"+uri+">")}
}

// waitDialogState reads a BLF subscription's NOTIFYs until one shows a
// dialog in state (the first may come before the node heard of the call).
func waitDialogState(t *testing.T, sub *parktest.Subscription, state string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-sub.Notifies():
			info, err := parktest.ParseDialogInfo(n.Body)
			require.NoError(t, err)
			for _, d := range info.Dialogs {
				if d.State == state {
					return
				}
			}
		case <-deadline:
			t.Fatalf("no NOTIFY with a dialog %s", state)
		}
	}
}

// Redis paused (SIGSTOP: a partition, a stuck Redis): a park is answered
// within a second and a half, with 503 once the node found Redis silent,
// and parks work again soon after Redis resumes.
func TestClusterRedisPaused(t *testing.T) {
	redisSrv, nodes := startCluster(t, 1)
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	first, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	redisSrv.Pause()
	paused := time.Now()
	// Orbits claimed ahead serve parks until the node finds Redis silent:
	// a second after Redis last answered it at the latest.
	for {
		start := time.Now()
		c, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
		require.Less(t, time.Since(start), 1500*time.Millisecond, "a park waits for a silent Redis at most a second")
		if err != nil {
			code, _ := statusCode(t, err)
			require.Equal(t, 503, code)
			break
		}
		require.NoError(t, c.Hangup(ctx))
		require.Less(t, time.Since(paused), 3*time.Second, "parks are refused once the node found Redis silent")
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, first.WaitReceived(ctx, first.Received()+10), "music goes on")

	redisSrv.Resume()
	resumed := time.Now()
	require.Eventually(t, func() bool {
		c, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
		if err != nil {
			return false
		}
		require.NoError(t, c.Hangup(ctx))
		return true
	}, 10*time.Second, 100*time.Millisecond, "parks work again")
	t.Logf("parks work again %v after Redis resumed", time.Since(resumed).Round(time.Millisecond))
	require.NoError(t, first.Hangup(ctx))
}
