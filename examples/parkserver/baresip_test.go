package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// baresipPhone is a real softphone (baresip 1.x) driven over its ctrl_tcp
// control socket: netstring-framed JSON commands, replies and call events.
// The configuration follows ../shared/interop/SOFTPHONES.md: a 440 Hz sine
// as the microphone, a null speaker, auto-answer, everything on 127.0.0.1.
type baresipPhone struct {
	t    *testing.T
	name string
	uri  string
	cmd  *exec.Cmd
	ctrl net.Conn

	mu      sync.Mutex
	events  []map[string]any
	replies map[string]map[string]any
	more    chan struct{}
	token   int
}

// startBaresip starts a phone named name listening on sipPort (TCP on the
// same port, TLS on the next: leave a gap of 2 between phones).
func startBaresip(t *testing.T, name string, sipPort, ctrlPort, rtpLow int) *baresipPhone {
	t.Helper()
	bin := requireTool(t, "baresip", "baresip")
	dir := t.TempDir()
	config := fmt.Sprintf(`poll_method     epoll
sip_listen      127.0.0.1:%d
net_interface   127.0.0.1
module_path     /usr/lib/baresip/modules
module          g711.so
module          ausine.so
module          alsa.so
module          ctrl_tcp.so
module_tmp      account.so
module_app      menu.so
audio_source    ausine,440
audio_player    alsa,null
audio_alert     alsa,null
ausrc_srate     48000
ausrc_channels  2
rtp_ports       %d-%d
rtp_stats       yes
ctrl_tcp_listen 127.0.0.1:%d
`, sipPort, rtpLow, rtpLow+99, ctrlPort)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644))
	uri := fmt.Sprintf("sip:%s@127.0.0.1:%d", name, sipPort)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "accounts"), []byte("<"+uri+">;regint=0;answermode=auto\n"), 0o644))

	p := &baresipPhone{t: t, name: name, uri: uri, replies: map[string]map[string]any{}, more: make(chan struct{})}
	p.cmd = exec.Command(bin, "-4", "-f", dir)
	logFile, err := os.Create(filepath.Join(dir, "log"))
	require.NoError(t, err)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if p.ctrl != nil {
			p.send("quit", "")
			p.ctrl.Close()
		}
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Logf("baresip %s log:\n%s", name, log)
		}
	})
	// ctrl_tcp is up about 0.1 s after start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.ctrl, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ctrlPort))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: control socket never came up: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	go p.read()
	return p
}

// read parses netstrings off the control socket.
func (p *baresipPhone) read() {
	r := bufio.NewReader(p.ctrl)
	for {
		lenText, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenText, ":")))
		if err != nil {
			return
		}
		buf := make([]byte, n+1) // the payload and the trailing comma
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		var msg map[string]any
		if json.Unmarshal(buf[:n], &msg) != nil {
			continue
		}
		p.mu.Lock()
		if tok, ok := msg["token"].(string); ok && msg["response"] == true {
			p.replies[tok] = msg
		} else if msg["event"] == true {
			p.events = append(p.events, msg)
		}
		close(p.more)
		p.more = make(chan struct{})
		p.mu.Unlock()
	}
}

// send issues a command and returns its token.
func (p *baresipPhone) send(command, params string) string {
	p.mu.Lock()
	p.token++
	tok := strconv.Itoa(p.token)
	p.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	_, _ = fmt.Fprintf(p.ctrl, "%d:%s,", len(body), body)
	return tok
}

// do sends a command and waits for its reply's data.
func (p *baresipPhone) do(command, params string) string {
	p.t.Helper()
	tok := p.send(command, params)
	deadline := time.After(10 * time.Second)
	for {
		p.mu.Lock()
		reply, ok := p.replies[tok]
		wake := p.more
		p.mu.Unlock()
		if ok {
			data, _ := reply["data"].(string)
			return data
		}
		select {
		case <-wake:
		case <-deadline:
			p.t.Fatalf("baresip %s: no reply to %s", p.name, command)
		}
	}
}

// waitEvent waits for a call event of the given type (CALL_ESTABLISHED,
// CALL_CLOSED, TRANSFER) whose peer URI contains peer, counting from the
// index-th event; it returns the index after the match.
func (p *baresipPhone) waitEvent(from int, typ, peer string, timeout time.Duration) int {
	p.t.Helper()
	deadline := time.After(timeout)
	for i := from; ; {
		p.mu.Lock()
		events, wake := p.events, p.more
		p.mu.Unlock()
		for ; i < len(events); i++ {
			e := events[i]
			if e["type"] == typ && strings.Contains(fmt.Sprint(e["peeruri"]), peer) {
				return i + 1
			}
		}
		select {
		case <-wake:
		case <-deadline:
			p.t.Fatalf("baresip %s: no %s event with peer %q; events: %v", p.name, typ, peer, events)
		}
	}
}

// rtpCounts reads the current call's packet counters from audio_debug.
func (p *baresipPhone) rtpCounts() (rx, tx int) {
	p.t.Helper()
	data := p.do("audio_debug", "")
	// One RTCP member per remote SSRC: the server keeps one per leg.
	for _, m := range regexp.MustCompile(`rcvd=(\d+)`).FindAllStringSubmatch(data, -1) {
		n, _ := strconv.Atoi(m[1])
		rx += n
	}
	if m := regexp.MustCompile(`TX: packets=(\d+)`).FindStringSubmatch(data); m != nil {
		tx, _ = strconv.Atoi(m[1])
	}
	return rx, tx
}

// TestBaresipBlindTransferToParkThenRetrieve is the everyday use with real
// phones: alice calls bob, bob blind-transfers alice to the park extension
// (REFER; baresip sends no Referred-By, so the call has no parker), alice
// hears the music, carol dials the orbit and talks with alice. RTP counters
// on the phones prove audio flowed: music to alice while parked, then both
// ways between alice and carol through the server's relay.
func TestBaresipBlindTransferToParkThenRetrieve(t *testing.T) {
	requireTool(t, "baresip", "baresip")
	srv := startParkServer(t)

	alice := startBaresip(t, "alice", 35071, 34071, 35100)
	bob := startBaresip(t, "bob", 35073, 34073, 35300)
	carol := startBaresip(t, "carol", 35075, 34075, 35500)

	alice.do("dial", bob.uri)
	ai := alice.waitEvent(0, "CALL_ESTABLISHED", "bob", 10*time.Second)
	bob.waitEvent(0, "CALL_ESTABLISHED", "alice", 10*time.Second)

	bob.do("transfer", "sip:700@"+srv.addr)
	line := srv.waitLine("msg=parked", 15*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	require.Contains(t, line, `parker=""`, "baresip sends no Referred-By")
	ai = alice.waitEvent(ai, "CALL_ESTABLISHED", "700", 10*time.Second)

	// Music on hold: at least a second of it (50 packets) reaches alice.
	waitFor(t, 10*time.Second, "alice hears hold music", func() bool {
		rx, _ := alice.rtpCounts()
		return rx >= 50
	})

	carol.do("dial", "sip:"+orbit+"@"+srv.addr)
	carol.waitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	srv.waitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")

	// Through the relay, both ways: carol receives alice's tone and alice's
	// packet count keeps rising with carol's.
	aliceBefore, _ := alice.rtpCounts()
	waitFor(t, 10*time.Second, "carol hears alice and alice hears carol", func() bool {
		carolRx, carolTx := carol.rtpCounts()
		aliceRx, _ := alice.rtpCounts()
		return carolRx >= 50 && carolTx >= 50 && aliceRx >= aliceBefore+50
	})

	carol.do("hangup", "")
	alice.waitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
}

// waitFor polls cond until it holds or the timeout passes; interop peers
// give no event for "enough packets arrived".
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
