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
	"github.com/callpark/callpark/parktest"
)

// TestMeasureKillToFree is BENCHMARKS.md's "time from SIGKILL of a node to
// its orbit being free elsewhere", over 20 kills: node 1 holds orbit 701,
// is killed, and node 2 tries a directed park into 701 every 20 ms until it
// gets it. CLUSTER.md's goal: within the lease + 1 s. It takes about a
// minute, so it runs only with CALLPARK_MEASURE=1:
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
		_, err := parker.Call(ctx, "sip:701@"+victim.Addr, directed)
		require.NoError(t, err)
		require.NoError(t, victim.Cmd.Process.Signal(syscall.SIGKILL))
		killed := time.Now()
		<-victim.Exited
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
