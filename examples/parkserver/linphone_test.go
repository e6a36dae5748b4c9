package main

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// linphonePhone is linphone-cli (linphonec in pipe mode) driven with
// linphonecsh, set up as ../shared/interop/SOFTPHONES.md says: a null ALSA
// device, a WAV file as the microphone, IPv4 only, auto-answer. linphonecsh
// talks to one daemon per Unix user, so a test runs one linphone at a time.
type linphonePhone struct {
	t    *testing.T
	home string
	bin  string
}

func startLinphone(t *testing.T, user string, sipPort, rtpPort int) *linphonePhone {
	t.Helper()
	bin := requireTool(t, "linphonecsh", "linphone-cli")
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, ".asoundrc"), []byte("pcm.!default { type null }\n"), 0o644))
	// Without its database folder linphonec stalls before it listens.
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o755))
	rc := filepath.Join(home, "linphonerc")
	require.NoError(t, os.WriteFile(rc, []byte(fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=0
sip_tls_port=0
bind_address=127.0.0.1
guess_hostname=0
contact="%s" <sip:%s@127.0.0.1:%d>
default_proxy=-1
auto_net_state_mon=0
use_ipv6=0
ipv6_migration_done=1
[rtp]
audio_rtp_port=%d
[video]
enabled=0
capture=0
display=0
`, sipPort, user, user, sipPort, rtpPort)), 0o644))
	wav := filepath.Join(home, "tone.wav")
	require.NoError(t, os.WriteFile(wav, toneWAV(440, 30*time.Second), 0o644))

	p := &linphonePhone{t: t, home: home, bin: bin}
	p.run("exit") // a daemon left over from an earlier run would answer instead
	require.NoError(t, p.cmd("init", "-c", rc, "-a").Run())
	t.Cleanup(func() { p.run("exit") })
	// init returns before the daemon listens: poll until it answers.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.run("generic", "calls"), "No active call") {
		if time.Now().After(deadline) {
			t.Fatal("linphonec never came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.run("generic", "soundcard use files")
	p.run("generic", "play "+wav)
	return p
}

func (p *linphonePhone) cmd(args ...string) *exec.Cmd {
	c := exec.Command(p.bin, args...)
	c.Env = append(os.Environ(), "HOME="+p.home)
	return c
}

// run issues a linphonecsh command and returns what it printed.
func (p *linphonePhone) run(args ...string) string {
	out, _ := p.cmd(args...).CombinedOutput()
	return string(out)
}

// waitCallState polls "calls" until the call list shows state.
func (p *linphonePhone) waitCallState(state string, timeout time.Duration) {
	p.t.Helper()
	waitFor(p.t, timeout, "linphone shows a call in state "+state, func() bool {
		return strings.Contains(p.run("generic", "calls"), state)
	})
}

// toneWAV is an 8 kHz mono 16-bit WAV of a sine: the microphone linphone
// needs when it has no sound card.
func toneWAV(hz float64, d time.Duration) []byte {
	n := int(d.Seconds() * 8000)
	data := make([]byte, 2*n)
	for i := range n {
		v := int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/8000))
		binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
	}
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], 8000)
	binary.LittleEndian.PutUint32(h[28:], 16000)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	return append(h, data...)
}

// TestLinphoneRetrievesAndReparksByRefer is the Referred-By path with a real
// phone: a SIPp caller parks at 701; linphone (bob) dials 701, talks, then
// blind-transfers the call to the park extension. linphone's REFER carries
// Referred-By (sip:bob@127.0.0.1, no port), so the re-parked call's parker is
// bob. A SIPp retriever then takes 702 and hangs up, which ends the parked
// caller's scenario.
func TestLinphoneRetrievesAndReparksByRefer(t *testing.T) {
	requireTool(t, "linphonecsh", "linphone-cli")
	requireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	bob := startLinphone(t, "bob", 35081, 35200)

	parked := startSIPp(t, srv.addr, "park.xml", "700")
	srv.waitLine("msg=parked", 15*time.Second, "orbit=701")

	bob.run("generic", "call sip:701@"+srv.addr)
	srv.waitLine("msg=retrieved", 15*time.Second, "orbit=701", "retriever=sip:bob@127.0.0.1")
	bob.waitCallState("StreamsRunning", 15*time.Second)

	bob.run("generic", "transfer sip:700@"+srv.addr)
	srv.waitLine("msg=re-parked", 15*time.Second, "orbit=702", "parker=sip:bob@127.0.0.1")
	waitFor(t, 15*time.Second, "linphone hangs up after the transfer", func() bool {
		return strings.Contains(bob.run("generic", "calls"), "No active call")
	})

	startSIPp(t, srv.addr, "retrieve.xml", "702").wait(t, "retrieve")
	require.Contains(t, parked.wait(t, "park"), "parked-at 701")
}
