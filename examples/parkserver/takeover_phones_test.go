package main

import (
	"encoding/binary"
	"math"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
)

// Takeover with real phones: each is parked on node 1, node 1 is killed,
// the phone accepts the new node's re-INVITE and hears music again, then
// it is retrieved through the third node with audio both ways.

// killAndFindTaker parks nothing: it kills nodes[0] once the call in
// orbit has its record in Redis, and returns the node that took it over
// and the one that did not.
func killAndFindTaker(t *testing.T, nodes []*parkServerProcess, orbit string) (holder, other *parkServerProcess, killed time.Time) {
	t.Helper()
	id := parkIDOf(t, nodes[0], orbit)
	time.Sleep(recordsWritten)
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	killed = time.Now()
	<-nodes[0].Exited
	holder = holderOf(t, nodes[1:], id)
	other = nodes[1]
	if other == holder {
		other = nodes[2]
	}
	return holder, other, killed
}

func TestBaresipParkedCallTakenOver(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	_, nodes := startCluster(t, 3, "-policy", "lowest")
	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31091, CtrlPort: 30091, RTPLow: 18000})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31093, CtrlPort: 30093, RTPLow: 18200})

	alice.Do("dial", "sip:700@"+nodes[0].Addr)
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	line := nodes[0].WaitLine("msg=parked", 10*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	softphone.WaitFor(t, 10*time.Second, "alice hears hold music", func() bool { rx, _ := alice.RTPCounts(); return rx >= 25 })

	holder, other, killed := killAndFindTaker(t, nodes, orbit)
	before, _ := alice.RTPCounts()
	softphone.WaitFor(t, clusterLease+5*time.Second, "alice hears music from the new node", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= before+50
	})
	t.Logf("a second of music from the new node %v after SIGKILL", time.Since(killed).Round(time.Millisecond))

	carol.Do("dial", "sip:"+orbit+"@"+other.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	holder.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	softphone.BothWays(t, alice, carol)
	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
}

func TestLinphoneParkedCallTakenOver(t *testing.T) {
	interop.RequireTool(t, "linphonecsh", "linphone-cli")
	interop.RequireTool(t, "baresip", "baresip")
	_, nodes := startCluster(t, 3, "-policy", "lowest")
	bob := softphone.StartLinphone(t, softphone.LinphoneOptions{User: "bob", SIPPort: 31095, RTPPort: 31400})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31097, CtrlPort: 30097, RTPLow: 18400})

	bob.Run("generic", "call sip:700@"+nodes[0].Addr)
	line := nodes[0].WaitLine("msg=parked", 15*time.Second, "party=sip:bob")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	bob.WaitCallState("PausedByRemote", 15*time.Second) // music one way: the server's a=sendonly

	holder, other, killed := killAndFindTaker(t, nodes, orbit)
	rec := t.TempDir() + "/heard.wav"
	softphone.WaitFor(t, clusterLease+5*time.Second, "linphone takes the new node's re-INVITE", func() bool {
		return len(holder.Lines()) > 0 && containsLine(holder, `msg="call taken over"`, "orbit="+orbit)
	})
	bob.WaitCallState("PausedByRemote", 5*time.Second)
	// linphone records what it plays: music from the new node, not silence.
	bob.Run("generic", "record "+rec)
	softphone.WaitFor(t, 10*time.Second, "linphone plays the new node's music", func() bool {
		return loudness(t, rec) > 500
	})
	t.Logf("linphone's recording: RMS %.0f", loudness(t, rec))
	t.Logf("taken over %v after SIGKILL", time.Since(killed).Round(time.Millisecond))

	carol.Do("dial", "sip:"+orbit+"@"+other.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	holder.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	softphone.WaitFor(t, 10*time.Second, "carol hears bob", func() bool { rx, _ := carol.RTPCounts(); return rx >= 50 })
	carol.Do("hangup", "")
	softphone.WaitFor(t, 15*time.Second, "linphone's call ends", func() bool {
		return regexp.MustCompile(`No active call`).MatchString(bob.Run("generic", "calls"))
	})
}

// loudness is the RMS of the 16-bit samples of a WAV file being written
// (0 while it holds none).
func loudness(t *testing.T, path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 44+1600 {
		return 0
	}
	var sum float64
	n := 0
	for i := 44; i+1 < len(b); i += 2 {
		v := float64(int16(binary.LittleEndian.Uint16(b[i:])))
		sum += v * v
		n++
	}
	return math.Sqrt(sum / float64(n))
}

// containsLine reports whether p logged a line with every part.
func containsLine(p *parkServerProcess, parts ...string) bool {
	for _, l := range p.Lines() {
		ok := true
		for _, part := range parts {
			ok = ok && regexp.MustCompile(regexp.QuoteMeta(part)).MatchString(l)
		}
		if ok {
			return true
		}
	}
	return false
}
