package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/interop"
	"github.com/stretchr/testify/require"
)

// parkServerProcess is the built parkserver, running, with its log lines
// collected so a test can wait for one.
type parkServerProcess struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string

	exited chan struct{} // closed when the process has exited
	err    error         // its exit status, once exited

	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every new line
}

// buildParkServer compiles this package once per test binary run.
var buildParkServer = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "parkserver-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "parkserver")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// startParkServer runs the built parkserver on a free loopback port.
func startParkServer(t *testing.T, args ...string) *parkServerProcess {
	t.Helper()
	return runParkServer(t, append([]string{"-listen", "127.0.0.1:0", "-rtp-ports", "17000-17999"}, args...)...)
}

// runParkServer runs the built parkserver with exactly args.
func runParkServer(t *testing.T, args ...string) *parkServerProcess {
	t.Helper()
	bin, err := buildParkServer()
	require.NoError(t, err)
	p := &parkServerProcess{t: t, more: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait() // after the last line: Wait closes the pipe
		close(p.exited)
	}()
	t.Cleanup(func() {
		// A call a test left connected would hold the drain for a minute:
		// a second signal ends it at once.
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.exited:
			case <-time.After(35 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("parkserver log:\n%s", strings.Join(p.snapshot(), "\n"))
		}
	})
	line := p.waitLine(`msg="park server listening"`, 10*time.Second)
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	p.addr = m[1]
	return p
}

func (p *parkServerProcess) snapshot() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine returns the first log line containing every one of the parts,
// failing the test after timeout.
func (p *parkServerProcess) waitLine(part string, timeout time.Duration, more ...string) string {
	p.t.Helper()
	deadline := time.After(timeout)
	for seen := 0; ; {
		p.mu.Lock()
		lines, wake := p.lines, p.more
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if containsAll(lines[seen], append([]string{part}, more...)) {
				return lines[seen]
			}
		}
		select {
		case <-wake:
		case <-deadline:
			p.t.Fatalf("parkserver never logged a line with %q %q", part, more)
		}
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// freeUDPPort returns a loopback UDP port nobody uses right now (SIPp needs
// its ports named).
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// sipp runs one SIPp scenario from testdata/sipp to completion and returns
// what it logged with <log>.
type sippRun struct {
	done chan struct{}
	err  error
	out  []byte
	log  string
}

func startSIPp(t *testing.T, server, scenario, service string, extra ...string) *sippRun {
	t.Helper()
	return startSIPpAt(t, server, scenario, service, freeUDPPort(t), extra...)
}

// startSIPpAt runs a scenario with SIPp's SIP port fixed (a UAS that the
// server must reach), one call unless extra says -m.
func startSIPpAt(t *testing.T, server, scenario, service string, port int, extra ...string) *sippRun {
	t.Helper()
	bin := interop.RequireTool(t, "sipp", "sip-tester")
	dir := t.TempDir()
	logFile := filepath.Join(dir, "log")
	args := []string{server,
		"-sf", filepath.Join("testdata", "sipp", scenario),
		"-s", service,
		"-i", "127.0.0.1", "-p", fmt.Sprint(port), "-mp", fmt.Sprint(freeUDPPort(t)),
		"-nostdin", "-timeout", "40s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors"),
		"-trace_logs", "-log_file", logFile,
	}
	if !slices.Contains(extra, "-m") {
		args = append(args, "-m", "1")
	}
	r := &sippRun{done: make(chan struct{})}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Dir = "."
	go func() {
		defer close(r.done)
		r.out, r.err = cmd.CombinedOutput()
		logged, _ := os.ReadFile(logFile)
		errs, _ := os.ReadFile(filepath.Join(dir, "errors"))
		r.log = string(logged)
		if r.err != nil {
			r.out = append(r.out, errs...)
		}
	}()
	return r
}

func (r *sippRun) wait(t *testing.T, name string) string {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("SIPp %s did not finish", name)
	}
	require.NoError(t, r.err, "SIPp %s failed:\n%s", name, r.out)
	return r.log
}

// TestSIPpParkRetrieveRepark drives the built parkserver with SIPp: A parks
// (orbit 701), B retrieves 701 and re-parks A by REFER to the park extension
// (orbit 702, by the lru policy), C retrieves 702 and hangs up, and A gets
// that BYE. Each step is checked on the wire by the scenarios and in the
// server's log.
func TestSIPpParkRetrieveRepark(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)

	a := startSIPp(t, srv.addr, "park.xml", "700")
	srv.waitLine("msg=parked", 15*time.Second, "orbit=701")

	b := startSIPp(t, srv.addr, "repark.xml", "701", "-key", "parkext", "700")
	srv.waitLine("msg=re-parked", 15*time.Second, "orbit=702")
	require.Contains(t, b.wait(t, "repark"), "reparked-at 702")

	c := startSIPp(t, srv.addr, "retrieve.xml", "702")
	c.wait(t, "retrieve")
	require.Contains(t, a.wait(t, "park"), "parked-at 701")
	srv.waitLine("msg=retrieved", 5*time.Second, "orbit=702")
}

// TestSIPpEmptyOrbitAndUnknownUser checks the refusals a scanner or a
// mistyped number gets: 404 for an empty orbit and for a user that is
// neither the park extension nor an orbit.
func TestSIPpEmptyOrbitAndUnknownUser(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	for _, user := range []string{"755", "600"} {
		r := startSIPp(t, srv.addr, "notfound.xml", user)
		r.wait(t, "refused "+user)
	}
}

// TestSIPpShutdownDropsParkedCall parks a call with nowhere to recall it
// (baresip-style: no Referred-By, no fallback) and stops the server: the
// parked caller gets a BYE and the process exits.
func TestSIPpShutdownDropsParkedCall(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	a := startSIPp(t, srv.addr, "park.xml", "700")
	srv.waitLine("msg=parked", 15*time.Second)
	require.NoError(t, srv.cmd.Process.Signal(os.Interrupt))
	srv.waitLine("outcome=dropped", 15*time.Second)
	a.wait(t, "park")
	select {
	case <-srv.exited:
		require.NoError(t, srv.err, "a clean shutdown exits 0")
	case <-time.After(15 * time.Second):
		t.Fatal("parkserver did not exit after SIGINT")
	}
}

// TestSIPpRecallToParker is flow 5 with real peers and the Referred-By path
// (linphone's way): the parked INVITE names the parker, who gets "Parked at
// 701", then the recall after the pickup timeout, answers it, and is
// bridged to the parked caller until that one hangs up.
func TestSIPpRecallToParker(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	srv := startParkServer(t, "-timeout", "10s", "-recall-ring", "5s")
	parkerPort := freeUDPPort(t)
	parkerURI := fmt.Sprintf("sip:parker@127.0.0.1:%d", parkerPort)
	parker := startSIPpAt(t, srv.addr, "parker.xml", "parker", parkerPort, "-m", "2")
	parked := startSIPp(t, srv.addr, "park-referred.xml", "700", "-key", "parker", parkerURI)
	srv.waitLine("msg=parked", 15*time.Second, "parker="+parkerURI)
	srv.waitLine("msg=recall", 20*time.Second, "target="+parkerURI, "attempt=1")
	srv.waitLine("outcome=recalled", 20*time.Second)
	parked.wait(t, "parked caller")
	log := parker.wait(t, "parker")
	require.Contains(t, log, "notice Parked at 701")
	require.Contains(t, log, "recalled")
}

// TestSIPpLateOffer parks by delayed offer with -late-offer: SIPp's INVITE
// has no SDP, the 200 carries the server's sendonly offer and the orbit,
// SIPp's ACK answers; a retrieve then reaches the call, and its hang-up is
// passed on to the parked SIPp.
func TestSIPpLateOffer(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t, "-late-offer")
	a := startSIPp(t, srv.addr, "park-late.xml", "700")
	srv.waitLine("msg=parked", 15*time.Second, "orbit=701")
	c := startSIPp(t, srv.addr, "retrieve.xml", "701")
	c.wait(t, "retrieve")
	require.Contains(t, a.wait(t, "park by delayed offer"), "parked-at 701 offered m=audio")
	srv.waitLine("msg=retrieved", 5*time.Second, "orbit=701")
}
