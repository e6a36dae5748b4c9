// The deployment of README.md, run as written: redis-server, three park
// servers, Kamailio with kamailio.cfg in front, and baresip phones that
// know only Kamailio's address.
package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/proctest"
	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/internal/redistest"
)

// node starts one park server of the cluster.
func node(t *testing.T, bin string, redisSrv *redistest.Server, i int) *proctest.Process {
	t.Helper()
	return nodeWithLease(t, bin, redisSrv, i, 3*time.Second)
}

func nodeWithLease(t *testing.T, bin string, redisSrv *redistest.Server, i int, lease time.Duration) *proctest.Process {
	t.Helper()
	p := proctest.Start(t, bin,
		"-listen", "127.0.0.1:0",
		"-rtp-ports", fmt.Sprintf("%d-%d", 13000+i*300, 13299+i*300),
		"-redis", redisSrv.URL(), "-node", fmt.Sprintf("park%d", i+1), "-lease", lease.String(), "-drain", "2s")
	line := p.WaitLine(`msg="park server listening"`, 10*time.Second)
	p.Addr = regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	return p
}

func TestKamailioInFrontOfThreeParkServers(t *testing.T) {
	kamailio := interop.RequireTool(t, "kamailio", "kamailio")
	interop.RequireTool(t, "baresip", "baresip")
	redisSrv := redistest.Start(t)
	bin := proctest.Build(t, "../parkserver")
	nodes := []*proctest.Process{node(t, bin, redisSrv, 0), node(t, bin, redisSrv, 1), node(t, bin, redisSrv, 2)}

	dir := t.TempDir()
	list := filepath.Join(dir, "dispatcher.list")
	var entries string
	for _, n := range nodes {
		entries += "1 sip:" + n.Addr + "\n"
	}
	require.NoError(t, os.WriteFile(list, []byte(entries), 0o644))
	proxy := fmt.Sprintf("127.0.0.1:%d", proctest.FreeUDPPort(t))
	kam := proctest.Start(t, kamailio, "-f", "kamailio.cfg", "-DD", "-E", "-Y", dir,
		"-A", "LISTEN=udp:"+proxy, "-A", `DISPATCHER_LIST="`+list+`"`)
	kam.WaitLine("udp: 127.0.0.1", 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // the first OPTIONS round: every node active

	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31471, CtrlPort: 30471, RTPLow: 19400})
	bob := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "bob", SIPPort: 31473, CtrlPort: 30473, RTPLow: 19600})

	// One cycle: alice parks through the proxy, bob retrieves through the
	// proxy, they talk, bob hangs up. It returns the node that parked.
	parkedRe := regexp.MustCompile(`msg=parked orbit=(\S+)`)
	seen := map[*proctest.Process]int{} // log lines already read, per node
	cycle := func(live []*proctest.Process) *proctest.Process {
		t.Helper()
		ai := alice.Events()
		alice.Do("dial", "sip:700@"+proxy)
		alice.WaitEvent(ai, "CALL_ESTABLISHED", "700", 15*time.Second)
		var parkedOn *proctest.Process
		var orbit string
		softphone.WaitFor(t, 10*time.Second, "a node logs the park", func() bool {
			for _, n := range live {
				lines := n.Lines()
				for _, l := range lines[seen[n]:] {
					if m := parkedRe.FindStringSubmatch(l); m != nil {
						parkedOn, orbit = n, m[1]
					}
				}
				seen[n] = len(lines)
			}
			return parkedOn != nil
		})
		softphone.WaitFor(t, 10*time.Second, "alice hears the music", func() bool {
			rx, _ := alice.RTPCounts()
			return rx >= 25
		})
		bi := bob.Events()
		bob.Do("dial", "sip:"+orbit+"@"+proxy)
		bob.WaitEvent(bi, "CALL_ESTABLISHED", orbit, 15*time.Second)
		parkedOn.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit)
		softphone.BothWays(t, alice, bob)
		bob.Do("hangup", "")
		alice.WaitEvent(ai, "CALL_CLOSED", "", 10*time.Second)
		return parkedOn
	}

	// Parks spread over the nodes: round robin, three parks, three nodes.
	used := map[*proctest.Process]bool{}
	for range 3 {
		used[cycle(nodes)] = true
	}
	require.GreaterOrEqual(t, len(used), 2, "parks spread over the nodes")

	// One node dies in the middle: the proxy's OPTIONS find it gone, parks
	// and retrieves go on through the other two.
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	<-nodes[0].Exited
	for range 3 {
		n := cycle(nodes[1:])
		require.NotSame(t, nodes[0], n)
	}
}
