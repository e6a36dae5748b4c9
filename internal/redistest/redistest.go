// Package redistest runs a real redis-server (Debian redis-server) on a
// free loopback port for the tests of the cluster: one per test, nothing
// saved to disk, stopped when the test ends. Tests that can do with a fake
// (fast unit tests of the scripts) use miniredis instead.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/interop"
)

// Server is a redis-server process a test started.
type Server struct {
	t    testing.TB
	bin  string
	port int

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start runs redis-server on a free port of 127.0.0.1 with persistence off
// and stops it when the test ends. Without the binary the test is skipped
// naming the Debian package (failed under CALLPARK_INTEROP=1).
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: interop.RequireTool(t, "redis-server", "redis-server")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// Addr returns host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns the redis:// URL of database 0, as -redis takes it.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop kills the server (SIGKILL: a crash, nothing saved) and waits
// for it; stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies all the same
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause stops the server without losing anything (SIGSTOP): to its
// clients it is unreachable until Resume, and then comes back with its
// data, as after a restart that saved it or a network cut.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server go on (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatalf("redistest: %v to a stopped server", sig)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: %v: %v", sig, err)
	}
}

// Restart starts the server again on the same port, empty (nothing was
// saved), and waits until it answers PING.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.t.TempDir(),
		"--loglevel", "warning")
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	s.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server on %s does not answer: %v", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// String names the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("redis-server on %s", s.Addr()) }
