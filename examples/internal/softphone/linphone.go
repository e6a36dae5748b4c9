package softphone

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/interop"
	"github.com/stretchr/testify/require"
)

// LinphoneOptions places one linphone-cli phone.
type LinphoneOptions struct {
	// User is the phone's user: "bob", or an extension "102".
	User string
	// SIPPort is its UDP SIP port (TCP and TLS are off); RTPPort its audio
	// port.
	SIPPort, RTPPort int
	// Registrar, when set (host:port), makes the phone register there as
	// sip:User@Registrar with Password, in Realm.
	Registrar, Password, Realm string
	// MediaEncryption, when set, is linphone's [sip] media_encryption:
	// "srtp" offers SDES keys (a=crypto); MediaEncryptionMandatory makes
	// it offer RTP/SAVP and take no plain media.
	MediaEncryption          string
	MediaEncryptionMandatory bool
	// TLSCA, when set, is the CA file linphone trusts (root_ca): the phone
	// listens for TLS on SIPPort+1 too and can call sip:...;transport=tls
	// URIs. It verifies the server's chain but not its name
	// (verify_server_cn=0): with the name checked, linphone 5.1.65 refused
	// the tests' certificates for 127.0.0.1 ("X509 - Certificate
	// verification failed").
	TLSCA string
}

// Linphone is linphone-cli (linphonec in pipe mode) driven with
// linphonecsh, with a null ALSA device, a WAV file as the microphone, IPv4
// only and auto-answer. linphonecsh talks to one daemon per Unix user, so a
// test runs one linphone at a time.
type Linphone struct {
	t       testing.TB
	home    string
	bin     string
	rc      string // its config file: names the daemon's process
	logFile string
}

// StartLinphone starts the daemon and waits until it answers; the test's
// cleanup stops it.
func StartLinphone(t testing.TB, o LinphoneOptions) *Linphone {
	t.Helper()
	bin := interop.RequireTool(t, "linphonecsh", "linphone-cli")
	home := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(home, ".asoundrc"), []byte("pcm.!default { type null }\n"), 0o644))
	// Without its database folder linphonec stalls before it listens.
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".local", "share", "linphone"), 0o755))
	defaultProxy := "-1"
	var proxy string
	if o.Registrar != "" {
		defaultProxy = "0"
		proxy = fmt.Sprintf(`[proxy_0]
reg_proxy=<sip:%[1]s>
reg_identity=sip:%[2]s@%[1]s
reg_expires=600
reg_sendregister=1
publish=0
[auth_info_0]
username=%[2]s
passwd=%[3]s
realm=%[4]s
`, o.Registrar, o.User, o.Password, o.Realm)
	}
	var encryption string
	if o.MediaEncryption != "" {
		mandatory := 0
		if o.MediaEncryptionMandatory {
			mandatory = 1
		}
		encryption = fmt.Sprintf("media_encryption=%s\nmedia_encryption_mandatory=%d\n", o.MediaEncryption, mandatory)
	}
	tls := "sip_tls_port=0\n"
	if o.TLSCA != "" {
		tls = fmt.Sprintf("sip_tls_port=%d\nroot_ca=%s\nverify_server_certs=1\nverify_server_cn=0\n", o.SIPPort+1, o.TLSCA)
	}
	// With auto_net_state_mon=0 (needed on a loopback-only machine)
	// linphone never thinks the network is up, so it would not register
	// unless register_only_when_network_is_up=0.
	rc := filepath.Join(home, "linphonerc")
	require.NoError(t, os.WriteFile(rc, []byte(fmt.Sprintf(`[sip]
sip_port=%d
sip_tcp_port=0
%sbind_address=127.0.0.1
guess_hostname=0
contact="%s" <sip:%s@127.0.0.1:%d>
default_proxy=%s
auto_net_state_mon=0
use_ipv6=0
ipv6_migration_done=1
register_only_when_network_is_up=0
%s[rtp]
audio_rtp_port=%d
[video]
enabled=0
capture=0
display=0
%s`, o.SIPPort, tls, o.User, o.User, o.SIPPort, defaultProxy, encryption, o.RTPPort, proxy)), 0o644))
	wav := filepath.Join(home, "tone.wav")
	require.NoError(t, os.WriteFile(wav, ToneWAV(440, 30*time.Second), 0o644))

	// One daemon per Unix user: tests of other packages running at the
	// same time wait their turn.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "callpark-linphone.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	require.NoError(t, err)
	require.NoError(t, syscall.Flock(int(lock.Fd()), syscall.LOCK_EX))
	t.Cleanup(func() { lock.Close() }) // closing releases the lock, after the daemon's exit below

	p := &Linphone{t: t, home: home, bin: bin, rc: rc}
	p.Run("exit") // a daemon left over from an earlier run would answer instead
	// Its log is what says why a call failed (SDP, SRTP): a failed test
	// shows the lines that matter, after the daemon has stopped.
	p.logFile = filepath.Join(home, "linphonec.log")
	require.NoError(t, p.cmd("init", "-c", rc, "-a", "-d", "6", "-l", p.logFile).Run())
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("linphonec %s log (errors, warnings, call states, SRTP):\n%s", o.User, logLines(p.logFile, logHighlight, 200))
		}
	})
	t.Cleanup(p.stop)
	// init returns before the daemon listens: poll until it answers.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.Run("generic", "calls"), "No active call") {
		if time.Now().After(deadline) {
			t.Fatal("linphonec never came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Run("generic", "soundcard use files")
	p.Run("generic", "play "+wav)
	return p
}

// Log returns linphonec's log so far (all of it: -d 6).
func (p *Linphone) Log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// LogLines returns the last n lines of linphonec's log that match re.
func (p *Linphone) LogLines(re *regexp.Regexp, n int) string {
	return logLines(p.logFile, re, n)
}

func logLines(path string, re *regexp.Regexp, n int) string {
	b, _ := os.ReadFile(path)
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if re.MatchString(line) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// logHighlight picks the lines of a linphonec log that say why a call
// failed: errors, warnings, call state changes, SRTP.
var logHighlight = regexp.MustCompile(`-error-|-warning-|(?i)srtp|moving from state|encryption`)

// stop asks the daemon to exit and waits until its process is gone. "exit"
// returns once the daemon has read it, but linphonec goes on writing its
// config and database into home for a while; the test's TempDir cleanup,
// which runs next, would otherwise find files appearing under it, and the
// next test's daemon would meet this one's socket.
func (p *Linphone) stop() {
	p.Run("exit")
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := p.daemonPIDs()
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			// SIGTERM does not stop linphonec --pipe; this one is stuck.
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			p.t.Logf("linphonec %v did not exit within 10 s of \"exit\"; killed", pids)
			deadline = time.Now().Add(time.Hour)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// daemonPIDs lists the processes started with this phone's config file.
func (p *Linphone) daemonPIDs() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, arg := range strings.Split(string(cmdline), "\x00") {
			if arg == p.rc {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func (p *Linphone) cmd(args ...string) *exec.Cmd {
	c := exec.Command(p.bin, args...)
	c.Env = append(os.Environ(), "HOME="+p.home)
	return c
}

// Run issues a linphonecsh command (generic "call sip:...", generic
// "transfer sip:...", generic calls...) and returns what it printed.
func (p *Linphone) Run(args ...string) string {
	out, _ := p.cmd(args...).CombinedOutput()
	return string(out)
}

// WaitCallState polls "calls" until the call list shows state
// (StreamsRunning, ...).
func (p *Linphone) WaitCallState(state string, timeout time.Duration) {
	p.t.Helper()
	var calls string
	deadline := time.Now().Add(timeout)
	for {
		calls = p.Run("generic", "calls")
		if strings.Contains(calls, state) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting until linphone shows a call in state %s; it shows:\n%s", state, calls)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ToneWAV is an 8 kHz mono 16-bit WAV of a sine: the microphone linphone
// needs when it has no sound card, or music on hold whose G.711 a test
// knows.
func ToneWAV(hz float64, d time.Duration) []byte {
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
