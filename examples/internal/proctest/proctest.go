// Package proctest runs the examples' programs for real in tests: built
// once per test binary, started as processes whose log lines a test waits
// for, signalled and killed like a service manager or an admin would, and
// stopped when the test ends.
package proctest

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// builds caches each package's binary for the test binary's life: building
// the same program once per test would cost seconds each.
var builds sync.Map // package dir -> func() (string, error)

// Build compiles the Go program in dir (relative to the test's package, or
// absolute) once per test binary and returns the binary's path.
func Build(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := builds.LoadOrStore(abs, sync.OnceValues(func() (string, error) {
		out, err := os.MkdirTemp("", "callpark-bin")
		if err != nil {
			return "", err
		}
		bin := filepath.Join(out, filepath.Base(abs))
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(goTool, "build", "-o", bin, ".")
		cmd.Dir = abs
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", abs, err, msg)
		}
		return bin, nil
	}))
	bin, err := f.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Process is a program a test started, with its stderr collected line by
// line.
type Process struct {
	Cmd    *exec.Cmd
	Name   string
	Addr   string        // where it listens, when the test has found out
	Exited chan struct{} // closed when the process has exited
	Err    error         // its exit status, once Exited is closed

	t     testing.TB
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and replaced on every new line
}

// Start runs bin with args. When the test ends the process gets SIGINT
// (and a second one after 10 s, as an admin's second Ctrl-C), is killed
// if still there 35 s later, and its log is printed if the test failed.
func Start(t testing.TB, bin string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: filepath.Base(bin), t: t, more: make(chan struct{}), Exited: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	stderr, err := p.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Stdout = p.Cmd.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.more)
			p.more = make(chan struct{})
			p.mu.Unlock()
		}
		p.Err = p.Cmd.Wait() // after the last line: Wait closes the pipe
		close(p.Exited)
	}()
	t.Cleanup(func() {
		_ = p.Cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.Exited:
		case <-time.After(10 * time.Second):
			_ = p.Cmd.Process.Signal(os.Interrupt)
			select {
			case <-p.Exited:
			case <-time.After(35 * time.Second):
				_ = p.Cmd.Process.Kill()
				<-p.Exited
			}
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", p.Name, strings.Join(p.Lines(), "\n"))
		}
	})
	return p
}

// Lines returns what the process has logged so far.
func (p *Process) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// WaitLine returns the first log line containing part and every one of
// more, failing the test after timeout.
func (p *Process) WaitLine(part string, timeout time.Duration, more ...string) string {
	p.t.Helper()
	deadline := time.After(timeout)
	parts := append([]string{part}, more...)
	for seen := 0; ; {
		p.mu.Lock()
		lines, wake := p.lines, p.more
		p.mu.Unlock()
		for ; seen < len(lines); seen++ {
			if containsAll(lines[seen], parts) {
				return lines[seen]
			}
		}
		select {
		case <-wake:
		case <-p.Exited:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if seen == n {
				p.t.Fatalf("%s exited (%v) without logging a line with %q", p.Name, p.Err, parts)
			}
		case <-deadline:
			p.t.Fatalf("%s never logged a line with %q", p.Name, parts)
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

// WaitLogged waits until cond holds for the log so far, failing the test
// after timeout with what it waited for.
func (p *Process) WaitLogged(timeout time.Duration, what string, cond func(lines []string) bool) {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		lines, wake := p.lines, p.more
		p.mu.Unlock()
		if cond(lines) {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			p.t.Fatalf("%s never logged %s", p.Name, what)
		}
	}
}

// FreeUDPPort returns a loopback UDP port, first of four in a row that
// nobody uses right now, for a program that must be told its port (SIPp
// binds its media port and the three above it for RTCP and video;
// Kamailio). Ports are handed out in blocks of four, so one program's
// block never reaches into another's. They come from 9000-9999, below
// Linux's ephemeral ports (32768-60999) where other tests' sockets land at
// random, and apart from the RTP ranges the tests give servers and phones.
//
// A block handed out stays reserved until the test ends, by an flock on a
// file named after it, so no other test, in this process or in another
// package's test binary running beside it, draws the same block before
// the program told its port has bound it (two SIPp processes once drew the
// same block; the second failed to bind and sent nothing).
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	const blocks = 250
	start := rand.IntN(blocks)
	for k := range blocks {
		port := 9000 + 4*((start+k)%blocks)
		if !reserve(t, port) {
			continue
		}
		if udpFree(port, 4) {
			return port
		}
	}
	t.Fatal("no four free UDP ports in a row in 9000-9999")
	return 0
}

// reserve takes the block at port for the rest of the test, or reports
// false when another test holds it.
func reserve(t testing.TB, port int) bool {
	name := filepath.Join(os.TempDir(), fmt.Sprintf("callpark-udp-%d.lock", port))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("reserve UDP port block %d: %v", port, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	t.Cleanup(func() { f.Close() })
	return true
}

// udpFree reports whether n loopback UDP ports from port on can be bound.
func udpFree(port, n int) bool {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for p := port; p < port+n; p++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			return false
		}
		held = append(held, c)
	}
	return true
}
