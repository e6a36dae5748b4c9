package cluster_test

import (
	"context"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/proctest"
	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/parktest"
)

// TestMeasureKillToFree is BENCHMARKS.md's "time from SIGKILL of a node to
// its orbit being free elsewhere", over 20 kills: node 1 holds orbit 701,
// is killed, its party hangs up (so node 2's takeover re-INVITE gets 481
// and the call ends lost), and node 2 tries a directed park into 701 every
// 20 ms until it gets it. CLUSTER.md's goal: within the lease + 1 s. It
// takes about a minute, so it runs only with CALLPARK_MEASURE=1:
//
//	CALLPARK_MEASURE=1 go test -run MeasureKillToFree -v ./examples/cluster
func TestMeasureKillToFree(t *testing.T) {
	if os.Getenv("CALLPARK_MEASURE") != "1" {
		t.Skip("a measurement: set CALLPARK_MEASURE=1 to run it")
	}
	const lease, kills = 2 * time.Second, 20
	redisSrv := redistest.Start(t)
	bin := proctest.Build(t, "../parkserver")
	start := func(i int) *proctest.Process {
		return nodeWithLease(t, bin, redisSrv, i, lease)
	}
	other := start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	parker := parktest.NewPhone(t, parktest.PhoneOptions{User: "parker"})
	taker := parktest.NewPhone(t, parktest.PhoneOptions{User: "taker"})
	directed := parktest.CallOptions{Mute: true, Headers: []sip.Header{sip.NewHeader("Referred-By", "<"+parker.URI()+">")}}

	var took []time.Duration
	for range kills {
		victim := start(0)
		held, err := parker.Call(ctx, "sip:701@"+victim.Addr, directed)
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond) // its record in Redis
		require.NoError(t, victim.Cmd.Process.Signal(syscall.SIGKILL))
		killed := time.Now()
		<-victim.Exited
		short, cancelBye := context.WithTimeout(ctx, 50*time.Millisecond)
		_ = held.Hangup(short) // to the dead node: the phone forgets the call
		cancelBye()
		for {
			c, err := taker.Call(ctx, "sip:701@"+other.Addr, directed)
			if err == nil {
				took = append(took, time.Since(killed))
				require.NoError(t, c.Hangup(ctx))
				break
			}
			require.Less(t, time.Since(killed), 3*lease, "701 never came free: %v", err)
			time.Sleep(20 * time.Millisecond)
		}
	}
	slices.Sort(took)
	t.Logf("SIGKILL → orbit free on another node, %d kills, lease %v: min %v, median %v, max %v",
		len(took), lease, took[0].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
	require.LessOrEqual(t, took[len(took)-1], lease+time.Second, "CLUSTER.md 6: within lease + 1 s")
}

// TestMeasureTakeover is BENCHMARKS.md's "death to first music packet from
// the new node" (CLUSTER.md 10: within lease + 3 s), over 20 kills with
// -lease 3s and with the default: node 1 holds a parked call, is killed,
// and the party waits for the re-INVITE of node 2 and its first packet of
// music. Minutes long, so only with CALLPARK_MEASURE=1:
//
//	CALLPARK_MEASURE=1 go test -run MeasureTakeover -v -timeout 20m ./examples/cluster
func TestMeasureTakeover(t *testing.T) {
	if os.Getenv("CALLPARK_MEASURE") != "1" {
		t.Skip("a measurement: set CALLPARK_MEASURE=1 to run it")
	}
	for _, lease := range []time.Duration{3 * time.Second, redisorbit.DefaultLease} {
		t.Run(lease.String(), func(t *testing.T) {
			const kills = 20
			redisSrv := redistest.Start(t)
			bin := proctest.Build(t, "../parkserver")
			nodeWithLease(t, bin, redisSrv, 1, lease)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			party := parktest.NewPhone(t, parktest.PhoneOptions{User: "party"})
			var took []time.Duration
			for range kills {
				victim := nodeWithLease(t, bin, redisSrv, 0, lease)
				c, err := party.Call(ctx, "sip:700@"+victim.Addr, parktest.CallOptions{Mute: true})
				require.NoError(t, err)
				require.NoError(t, c.WaitReceived(ctx, 5))
				first := c.RemoteSDP().Addr
				require.NoError(t, victim.Cmd.Process.Signal(syscall.SIGKILL))
				killed := time.Now()
				<-victim.Exited
				for c.RemoteSDP().Addr == first {
					require.Less(t, time.Since(killed), 3*lease, "never taken over")
					time.Sleep(time.Millisecond)
				}
				require.NoError(t, c.WaitReceived(ctx, c.Received()+1))
				took = append(took, time.Since(killed))
				require.NoError(t, c.Hangup(ctx))
			}
			slices.Sort(took)
			p99 := took[(len(took)*99+99)/100-1]
			t.Logf("SIGKILL → first music packet from the new node, %d kills, lease %v: p50 %v, p99 %v, max %v",
				len(took), lease, took[len(took)/2].Round(time.Millisecond), p99.Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
			require.LessOrEqual(t, took[len(took)-1], lease+3*time.Second, "CLUSTER.md 10: within lease + 3 s")
		})
	}
}
