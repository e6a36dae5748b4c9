package main

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

// CLUSTER.md 9-12 on the built program: a parked call outlives the node
// holding it (SIGKILL, SIGSTOP, SIGTERM), on a real redis-server.

var parkIDField = regexp.MustCompile(`park_id=(\S+)`)

// recordsWritten is ample time for a node to write a new call's record to
// Redis (it gathers writes for 10 ms; a loaded CI machine may take longer):
// a node killed before that loses the call, as docs/SIP-CONTRACT.md says.
const recordsWritten = 300 * time.Millisecond

var outcomeField = regexp.MustCompile(`outcome=(\S+)`)

// parkIDOf returns the park ID node p logged for its park into orbit o.
func parkIDOf(t *testing.T, p *parkServerProcess, o string) string {
	t.Helper()
	line := p.WaitLine("msg=parked", 5*time.Second, "orbit="+o+" ")
	m := parkIDField.FindStringSubmatch(line)
	require.NotNil(t, m, line)
	return m[1]
}

// ends returns, over every node's log (dead ones too), the outcomes each
// park ID ended with: CLUSTER.md's one-outcome rule says one each. A
// program logs each end once, at the node where it happened: retrieves
// and hang-ups where the request was served, the others with outcome=.
func ends(nodes ...*parkServerProcess) map[string][]string {
	out := map[string][]string{}
	for _, n := range nodes {
		for _, line := range n.Lines() {
			id := parkIDField.FindStringSubmatch(line)
			if id == nil {
				continue
			}
			var outcome string
			switch oc := outcomeField.FindStringSubmatch(line); {
			case oc != nil:
				outcome = oc[1]
			case strings.Contains(line, "msg=retrieved "):
				outcome = "retrieved"
			case strings.Contains(line, `msg="hung up while parked"`):
				outcome = "abandoned"
			default:
				continue
			}
			out[id[1]] = append(out[id[1]], outcome)
		}
	}
	return out
}

// requireEndedOnce checks that each park ID ended exactly once, with want.
func requireEndedOnce(t *testing.T, nodes []*parkServerProcess, want string, parkIDs ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := ends(nodes...)
		ok := true
		for _, id := range parkIDs {
			if len(got[id]) != 1 {
				ok = false
			}
		}
		if ok || time.Now().After(deadline) {
			for _, id := range parkIDs {
				require.Equal(t, []string{want}, got[id], "park ID %s", id)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTakenOver waits until the parked call's media comes from elsewhere
// than first (the new node's re-INVITE was answered) and a packet has
// arrived from there; it returns when that packet came.
func waitTakenOver(ctx context.Context, t *testing.T, c *parktest.Call, first netip.AddrPort) time.Time {
	t.Helper()
	for c.RemoteSDP().Addr == first {
		select {
		case <-ctx.Done():
			t.Fatalf("no takeover re-INVITE for the call in orbit %s", c.Orbit())
		case <-c.Done():
			t.Fatalf("the call in orbit %s ended", c.Orbit())
		case <-time.After(5 * time.Millisecond):
		}
	}
	require.NoError(t, c.WaitReceived(ctx, c.Received()+1), "music from the new node")
	return time.Now()
}

// holderOf returns the node whose log says it took the call over.
func holderOf(t *testing.T, nodes []*parkServerProcess, parkID string) *parkServerProcess {
	t.Helper()
	for range 250 {
		for _, n := range nodes {
			for _, line := range n.Lines() {
				if regexp.MustCompile(`msg="call taken over"`).MatchString(line) && parkIDField.FindStringSubmatch(line) != nil && parkIDField.FindStringSubmatch(line)[1] == parkID {
					return n
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no node took park ID %s over", parkID)
	return nil
}

// SIGKILL of the node holding a parked call: another node re-INVITEs the
// party within lease + 3 s and plays its music, BLF at a third node shows
// no gap, and the call is retrieved through any node with audio both ways.
func TestClusterTakeoverAfterKill(t *testing.T) {
	_, nodes := startCluster(t, 3, "-policy", "lowest")
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	desk := parktest.NewPhone(t, parktest.PhoneOptions{User: "desk"})
	parked, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{})
	require.NoError(t, err)
	o := parked.Orbit()
	id := parkIDOf(t, nodes[0], o)
	require.NoError(t, parked.WaitReceived(ctx, 10))
	sub, err := desk.Subscribe(ctx, orbitURI(nodes[2], o), "dialog", time.Hour)
	require.NoError(t, err)
	waitDialogState(t, sub, "confirmed")

	first := parked.RemoteSDP().Addr
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	<-nodes[0].Exited

	// Within the dead node's lease a retrieve forwarded there fails fast.
	_, err = bob.Call(ctx, orbitURI(nodes[1], o), parktest.CallOptions{Mute: true})
	code, _ := statusCode(t, err)
	require.Equal(t, 480, code, "forwarded to a dead node")
	require.Less(t, time.Since(killed), 2*time.Second)

	music := waitTakenOver(ctx, t, parked, first).Sub(killed)
	t.Logf("music again %v after SIGKILL (lease %v)", music.Round(time.Millisecond), clusterLease)
	require.Less(t, music, clusterLease+3*time.Second, "CLUSTER.md 10: within lease + 3 s")
	holder := holderOf(t, nodes[1:], id)
	for {
		select {
		case n := <-sub.Notifies():
			info, err := parktest.ParseDialogInfo(n.Body)
			require.NoError(t, err)
			for _, d := range info.Dialogs {
				require.NotEqual(t, "terminated", d.State, "BLF shows no gap")
			}
			continue
		default:
		}
		break
	}

	// Retrieved through the node that does not hold it: forwarded.
	via := nodes[1]
	if via == holder {
		via = nodes[2]
	}
	talk, err := bob.Call(ctx, orbitURI(via, o), parktest.CallOptions{})
	require.NoError(t, err)
	require.Contains(t, talk.Header("Contact"), holder.Addr, "the dialog is with the node that took the call over")
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25), "audio both ways")
	waitDialogState(t, sub, "terminated")
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
	require.True(t, parked.EndedByRemote())
	requireEndedOnce(t, nodes, "retrieved", id)
	require.NoError(t, sub.Unsubscribe(ctx))
}

// A party that has hung up meanwhile (its BYE went to the dead node)
// answers the takeover re-INVITE 481; one that does not answer is given
// up: each call ends lost, once, and its orbit is free again.
func TestClusterTakeoverRefused(t *testing.T) {
	_, nodes := startCluster(t, 2, "-policy", "lowest")
	ctx := clusterCtx(t)
	gone := parktest.NewPhone(t, parktest.PhoneOptions{User: "gone"})
	mute := parktest.NewPhone(t, parktest.PhoneOptions{User: "mute", ReInviteAnswerDelay: time.Minute})
	c1, err := gone.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	c2, err := mute.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	id1, id2 := parkIDOf(t, nodes[0], c1.Orbit()), parkIDOf(t, nodes[0], c2.Orbit())
	time.Sleep(recordsWritten)

	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	<-nodes[0].Exited
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_ = c1.Hangup(short) // to the dead node: nobody answers, but the phone forgets the call
	cancel()

	requireEndedOnceWithin(t, nodes, clusterLease+2*time.Second, "lost", id1)
	t.Logf("refused call lost %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	again, err := gone.Call(ctx, orbitURI(nodes[1], c1.Orbit()), parktest.CallOptions{Mute: true, Headers: referredByHeaders(gone.URI())})
	require.NoError(t, err, "its orbit is free again: a directed park gets it")
	require.NoError(t, again.Hangup(ctx))

	requireEndedOnceWithin(t, nodes, clusterLease+12*time.Second, "lost", id2)
	select {
	case <-c2.Done():
		require.True(t, c2.EndedByRemote(), "the silent party gets a BYE")
	case <-time.After(5 * time.Second):
		t.Fatal("the party that never answered was left on the line")
	}
	nodes[1].WaitLine(`msg="call lost"`, time.Second, "park_id="+id2, "why=")
}

// requireEndedOnceWithin waits up to d for each park ID to end, then
// checks the one-outcome rule.
func requireEndedOnceWithin(t *testing.T, nodes []*parkServerProcess, d time.Duration, want string, parkIDs ...string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got := ends(nodes...)
		done := true
		for _, id := range parkIDs {
			done = done && len(got[id]) > 0
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	requireEndedOnce(t, nodes, want, parkIDs...)
}

// A hundred calls parked on one node, which is killed: the survivors
// split them, each call taken over once, each party hearing music again.
func TestClusterTakeoverOfAHundredCalls(t *testing.T) {
	_, nodes := startCluster(t, 3, "-orbits", "1000-1499")
	ctx := clusterCtx(t)
	p := parktest.NewPhone(t, parktest.PhoneOptions{User: "many"})
	var calls []*parktest.Call
	for range 100 {
		c, err := p.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		calls = append(calls, c)
	}
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = parkIDOf(t, nodes[0], c.Orbit())
	}
	time.Sleep(recordsWritten)
	firsts := make([]netip.AddrPort, len(calls))
	for i, c := range calls {
		firsts[i] = c.RemoteSDP().Addr
	}
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	killed := time.Now()
	<-nodes[0].Exited
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for i, c := range calls {
		wg.Go(func() {
			d := waitTakenOver(ctx, t, c, firsts[i]).Sub(killed)
			mu.Lock()
			slowest = max(slowest, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("100 calls taken over; the last one's music %v after SIGKILL", slowest.Round(time.Millisecond))
	require.Less(t, slowest, clusterLease+3*time.Second)
	took := map[string]int{}
	for _, id := range ids {
		took[holderOf(t, nodes[1:], id).Addr]++
	}
	t.Logf("split: %v", took)
	require.Len(t, took, 2, "both survivors take a share")
	for _, n := range took {
		require.Greater(t, n, 20, "a fair share each")
	}
	for _, c := range calls {
		require.NoError(t, c.Hangup(ctx))
	}
	requireEndedOnce(t, nodes, "abandoned", ids...)
}

// A node paused past its lease (SIGSTOP), and past its call's pickup
// timeout: another node takes the call over and recalls the parker on
// time, once. Resumed (SIGCONT), the paused node finds the call taken and
// forgets it: no BYE, no recall of its own, though its pickup timer had
// run out while it slept.
func TestClusterNodePausedPastItsLease(t *testing.T) {
	_, nodes := startCluster(t, 2, "-policy", "lowest", "-timeout", "10s")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	bob, parked, id := parkedByBob(ctx, t, nodes[0])
	time.Sleep(recordsWritten)

	first := parked.RemoteSDP().Addr
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGSTOP))
	paused := time.Now()
	waitTakenOver(ctx, t, parked, first)
	nodes[1].WaitLine(`msg="call taken over"`, 5*time.Second, "park_id="+id)
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1), "the new node recalls bob at the old deadline")
	time.Sleep(10*time.Second + 500*time.Millisecond - time.Since(paused))

	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGCONT))
	nodes[0].WaitLine("call forgotten", 5*time.Second, "orbit="+parked.Orbit())
	time.Sleep(time.Second)
	require.Equal(t, 1, bob.Inbox().Invites(), "bob rung once, by the new node only")
	require.True(t, containsLine(nodes[1], "msg=recall ", "park_id="+id), "the new node's recall, logged")
	require.False(t, containsLine(nodes[0], "msg=recall ", "park_id="+id), "the resumed node rings nobody")
	select {
	case <-parked.Done():
		t.Fatal("the resumed node hung up a call that is no longer its own")
	default:
	}
	require.Empty(t, ends(nodes...)[id], "moving is not an end")
	require.NoError(t, parked.Hangup(ctx))
	requireEndedOnce(t, nodes, "abandoned", id)
}

// parkedByBob parks carol's call at n, parked by bob (Referred-By), whose
// phone lets recalls ring; it returns bob, the parked call and its park ID.
func parkedByBob(ctx context.Context, t *testing.T, n *parkServerProcess) (*parktest.Phone, *parktest.Call, string) {
	t.Helper()
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	parked, err := carol.Call(ctx, parkURI(n), parktest.CallOptions{Mute: true, Headers: referredByHeaders(bob.URI())})
	require.NoError(t, err)
	return bob, parked, parkIDOf(t, n, parked.Orbit())
}

// SIGKILL while a recall rings: the node that takes the call over rings the
// parker again, once, and the call ends once.
func TestClusterKilledWhileRecallRings(t *testing.T) {
	_, nodes := startCluster(t, 2, "-policy", "lowest", "-timeout", "10s", "-recall-ring", "4s")
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	bob, parked, id := parkedByBob(ctx, t, nodes[0])
	first := parked.RemoteSDP().Addr

	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1), "the recall rings")
	time.Sleep(recordsWritten) // the record says it rings
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	<-nodes[0].Exited
	waitTakenOver(ctx, t, parked, first)
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 2), "the new node rings bob again")
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote(), "nobody answered: the call is dropped")
	case <-ctx.Done():
		t.Fatal("the call was never dropped")
	}
	require.Equal(t, 2, bob.Inbox().Invites(), "recalled again at most once")
	requireEndedOnce(t, nodes, "dropped", id)
}

// Restarting every node in turn (SIGTERM, start again) with 30 calls
// parked: each stopping node hands its calls to the others; no call is
// lost and no parker rung.
func TestClusterRollingRestart(t *testing.T) {
	redisSrv, nodes := startCluster(t, 3, "-policy", "lowest", "-timeout", "5m")
	ctx := clusterCtx(t)
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	var calls []*parktest.Call
	var ids []string
	for i := range 30 {
		n := nodes[i%3]
		p := parktest.NewPhone(t, parktest.PhoneOptions{User: fmt.Sprintf("c%d", i)})
		c, err := p.Call(ctx, parkURI(n), parktest.CallOptions{Mute: true, Headers: referredByHeaders(bob.URI())})
		require.NoError(t, err)
		calls = append(calls, c)
		ids = append(ids, parkIDOf(t, n, c.Orbit()))
	}
	all := append([]*parkServerProcess(nil), nodes...)
	for i := range nodes {
		start := time.Now()
		require.NoError(t, nodes[i].Cmd.Process.Signal(syscall.SIGTERM))
		select {
		case <-nodes[i].Exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("node %d did not exit", i+1)
		}
		t.Logf("node %d handed its calls over and exited in %v", i+1, time.Since(start).Round(time.Millisecond))
		nodes[i] = startNode(t, redisSrv, i, "-policy", "lowest", "-timeout", "5m")
		all = append(all, nodes[i])
	}
	for _, c := range calls {
		select {
		case <-c.Done():
			t.Fatalf("the call in orbit %s ended", c.Orbit())
		default:
		}
		require.NoError(t, c.WaitReceived(ctx, c.Received()+5), "music, orbit %s", c.Orbit())
	}
	require.Zero(t, bob.Inbox().Invites(), "no parker rung")
	for _, id := range ids {
		require.Empty(t, ends(all...)[id], "no call ended")
	}
	for _, c := range calls {
		require.NoError(t, c.Hangup(ctx))
	}
	requireEndedOnce(t, all, "abandoned", ids...)
}
