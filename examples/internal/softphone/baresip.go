package softphone

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

	"github.com/callpark/callpark/internal/interop"
	"github.com/stretchr/testify/require"
)

// BaresipOptions places one baresip phone.
type BaresipOptions struct {
	// Name is the phone's user: "alice", or an extension "101".
	Name string
	// SIPPort is where it listens for SIP over UDP; it takes TCP on the same
	// port and TLS on the next, so leave a gap of 2 between phones.
	SIPPort int
	// CtrlPort is its ctrl_tcp control socket.
	CtrlPort int
	// RTPLow is the first of the 100 RTP ports it may use.
	RTPLow int
	// Registrar, when set (host:port), makes the phone register there as
	// sip:Name@Registrar, answering digest challenges with Password; unset,
	// the phone registers nowhere and is sip:Name@127.0.0.1:SIPPort.
	Registrar string
	Password  string
	// TLSCert, when set, is a PEM file holding the phone's certificate and
	// its key (baresip's sip_certificate), and TLSCA the CA file it trusts
	// (sip_cafile): the phone listens for TLS on SIPPort+1 and its URI is
	// sip:Name@127.0.0.1:SIPPort+1;transport=tls, so calls to and from it
	// go over TLS.
	TLSCert, TLSCA string
	// MediaEnc, when set, loads baresip's srtp module and puts
	// ;mediaenc=MediaEnc on the account: "srtp-mand" offers RTP/SAVP with
	// a=crypto lines (SDES, RFC 4568) and takes nothing else, "srtp" offers
	// RTP/AVP with a=crypto (best effort: plain if the answer has none).
	MediaEnc string
}

// Baresip is a real softphone (baresip 1.x) driven over its ctrl_tcp control
// socket: netstring-framed JSON commands, replies and events.
type Baresip struct {
	// URI is how to call the phone: its address of record when it
	// registers, its own address when not.
	URI string

	t       testing.TB
	name    string
	cmd     *exec.Cmd
	ctrl    net.Conn
	logPath string

	mu      sync.Mutex
	events  []map[string]any
	replies map[string]map[string]any
	more    chan struct{}
	token   int
}

// StartBaresip starts a phone and connects to its control socket; the
// test's cleanup quits it and, if the test failed, prints its log.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin := interop.RequireTool(t, "baresip", "baresip")
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
`, o.SIPPort, o.RTPLow, o.RTPLow+99, o.CtrlPort)
	uri := fmt.Sprintf("sip:%s@127.0.0.1:%d", o.Name, o.SIPPort)
	if o.TLSCert != "" {
		config += fmt.Sprintf("sip_certificate %s\nsip_cafile %s\n", o.TLSCert, o.TLSCA)
		uri = fmt.Sprintf("sip:%s@127.0.0.1:%d;transport=tls", o.Name, o.SIPPort+1)
	}
	if o.MediaEnc != "" {
		config += "module          srtp.so\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644))
	account := "<" + uri + ">;regint=0;answermode=auto"
	if o.Registrar != "" {
		uri = "sip:" + o.Name + "@" + o.Registrar
		account = "<" + uri + ">;auth_user=" + o.Name + ";auth_pass=" + o.Password + ";regint=600;answermode=auto"
	}
	if o.MediaEnc != "" {
		account += ";mediaenc=" + o.MediaEnc
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "accounts"), []byte(account+"\n"), 0o644))
	return startBaresip(t, bin, dir, o.Name, uri, o.CtrlPort)
}

// StartBaresipConfig starts a phone from a config folder of the project's
// own (the README's walkthrough phones), copied first so that what baresip
// writes there stays out of the work tree: name is its user, ctrlPort the
// ctrl_tcp_listen port its config names. The phone is told nothing the
// folder does not say.
func StartBaresipConfig(t testing.TB, src, name string, ctrlPort int) *Baresip {
	t.Helper()
	bin := interop.RequireTool(t, "baresip", "baresip")
	dir := t.TempDir()
	for _, f := range []string{"config", "accounts"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	accounts, _ := os.ReadFile(filepath.Join(dir, "accounts"))
	uri := strings.TrimPrefix(strings.SplitN(string(accounts), ">", 2)[0], "<")
	return startBaresip(t, bin, dir, name, uri, ctrlPort)
}

func startBaresip(t testing.TB, bin, dir, name, uri string, ctrlPort int) *Baresip {
	t.Helper()
	p := &Baresip{t: t, name: name, URI: uri, replies: map[string]map[string]any{}, more: make(chan struct{}),
		logPath: filepath.Join(dir, "log")}
	p.cmd = exec.Command(bin, "-4", "-f", dir)
	// A console module reads stdin; one that ends would stop the phone.
	stdin, err := p.cmd.StdinPipe()
	require.NoError(t, err)
	logFile, err := os.Create(p.logPath)
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
		stdin.Close()
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
func (p *Baresip) read() {
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
func (p *Baresip) send(command, params string) string {
	p.mu.Lock()
	p.token++
	tok := strconv.Itoa(p.token)
	p.mu.Unlock()
	body, _ := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	_, _ = fmt.Fprintf(p.ctrl, "%d:%s,", len(body), body)
	return tok
}

// Do sends a command (dial URI, transfer URI, hangup, audio_debug...) and
// waits for its reply's data.
func (p *Baresip) Do(command, params string) string {
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

// WaitEvent waits for an event of the given type (REGISTER_OK,
// CALL_ESTABLISHED, CALL_CLOSED, TRANSFER...) whose peer URI contains peer,
// counting from the from-th event; it returns the index after the match.
func (p *Baresip) WaitEvent(from int, typ, peer string, timeout time.Duration) int {
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

// Events returns how many events the phone has sent so far: the from of a
// later WaitEvent that must not match an earlier call's.
func (p *Baresip) Events() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// Log returns what the phone has printed so far (its console and
// warnings: "srtp: failed to decrypt RTP packet ..." and the like).
func (p *Baresip) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Event returns the i-th event the phone has sent (WaitEvent's return
// value minus one is the one it matched): its fields as ctrl_tcp gives
// them (type, peeruri, param...).
func (p *Baresip) Event(i int) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events[i]
}

// RTPCounts reads the current call's packet counters from audio_debug:
// received (over every remote SSRC) and sent.
func (p *Baresip) RTPCounts() (rx, tx int) {
	p.t.Helper()
	data := p.Do("audio_debug", "")
	for _, m := range rcvdCount.FindAllStringSubmatch(data, -1) {
		n, _ := strconv.Atoi(m[1])
		rx += n
	}
	if m := txCount.FindStringSubmatch(data); m != nil {
		tx, _ = strconv.Atoi(m[1])
	}
	return rx, tx
}

var (
	rcvdCount = regexp.MustCompile(`rcvd=(\d+)`)
	txCount   = regexp.MustCompile(`TX: packets=(\d+)`)
)

// BothWays waits until each phone's received count has risen by a second
// of audio: the two hear each other.
func BothWays(t testing.TB, a, b *Baresip) {
	t.Helper()
	aBefore, _ := a.RTPCounts()
	bBefore, _ := b.RTPCounts()
	WaitFor(t, 10*time.Second, "they hear each other", func() bool {
		aRx, _ := a.RTPCounts()
		bRx, _ := b.RTPCounts()
		return aRx >= aBefore+50 && bRx >= bBefore+50
	})
}
