// Package redistest runs a real redis-server (Debian redis-server) on a
// free loopback port for the tests of the cluster: one per test, nothing
// saved to disk, stopped when the test ends. Tests that can do with a fake
// (fast unit tests of the scripts) use miniredis instead.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/internal/tlstest"
)

// Server is a redis-server process a test started.
type Server struct {
	t    testing.TB
	bin  string
	port int
	opts Options
	args []string // the TLS and ACL arguments, made once
	dir  string   // the certificates' files
	cert tls.Certificate

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Options make a server that asks what a production Redis asks: TLS
// (rediss://) and a password or an ACL user. The zero value is a plain
// server anyone on the loopback may use.
type Options struct {
	// TLS, when set, makes the server speak TLS only (--port 0,
	// --tls-port) with a certificate for 127.0.0.1 that this CA signs.
	TLS *tlstest.CA
	// ClientCerts makes a TLS server require a client certificate the CA
	// signed (--tls-auth-clients yes); ClientCert returns one.
	ClientCerts bool
	// Password is the default user's password (--requirepass).
	Password string
	// User and UserPassword add an ACL user allowed every command and
	// key, and turn the default user off.
	User, UserPassword string
}

// Start runs redis-server on a free port of 127.0.0.1 with persistence off
// and stops it when the test ends. Without the binary the test is skipped
// naming the Debian package (failed under CALLPARK_INTEROP=1).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with TLS or authentication (Options).
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, bin: interop.RequireTool(t, "redis-server", "redis-server"), opts: opts}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.arguments()
	t.Cleanup(s.Stop)
	s.Restart()
	return s
}

// arguments makes the TLS and ACL arguments and writes the certificates.
func (s *Server) arguments() {
	o := s.opts
	if o.TLS != nil {
		s.dir = s.t.TempDir()
		certFile, keyFile := tlstest.WriteFiles(s.t, s.dir, o.TLS.Issue(s.t, tlstest.Leaf{}))
		auth := "no"
		if o.ClientCerts {
			auth = "yes"
			s.cert = o.TLS.Issue(s.t, tlstest.Leaf{})
		}
		s.args = append(s.args, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
			"--tls-ca-cert-file", o.TLS.WriteCA(s.t, s.dir), "--tls-auth-clients", auth)
	}
	if o.Password != "" {
		s.args = append(s.args, "--requirepass", o.Password)
	}
	if o.User != "" {
		// redis-server joins the words after --user into the directive.
		s.args = append(s.args, "--user", "default", "off", "--user", o.User, "on", ">"+o.UserPassword, "~*", "&*", "+@all")
	}
}

// CAFile returns the path of a PEM file of the CA that signed the server's
// certificate (Options.TLS), as -redis-ca takes it.
func (s *Server) CAFile() string {
	if s.opts.TLS == nil {
		s.t.Fatal("redistest: CAFile of a server without TLS")
	}
	return s.opts.TLS.WriteCA(s.t, s.t.TempDir())
}

// ClientCert returns a client certificate the server accepts
// (Options.ClientCerts).
func (s *Server) ClientCert() tls.Certificate { return s.cert }

// options are a client's options with the server's credentials.
func (s *Server) options() *redis.Options {
	o := &redis.Options{Addr: s.Addr(), DialTimeout: time.Second}
	if s.opts.User != "" {
		o.Username, o.Password = s.opts.User, s.opts.UserPassword
	} else {
		o.Password = s.opts.Password
	}
	if s.opts.TLS != nil {
		o.TLSConfig = &tls.Config{RootCAs: s.opts.TLS.Pool(), MinVersion: tls.VersionTLS12}
		if s.opts.ClientCerts {
			o.TLSConfig.Certificates = []tls.Certificate{s.cert}
		}
	}
	return o
}

// Addr returns host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL returns the URL of database 0, as -redis takes it: redis://, or
// rediss:// with TLS, with the user and password if the server asks them.
func (s *Server) URL() string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.opts.TLS != nil {
		u.Scheme = "rediss"
	}
	switch {
	case s.opts.User != "":
		u.User = url.UserPassword(s.opts.User, s.opts.UserPassword)
	case s.opts.Password != "":
		u.User = url.UserPassword("", s.opts.Password)
	}
	return u.String()
}

// Client returns a go-redis client closed when the test ends.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(s.options())
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
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.t.TempDir(),
		"--loglevel", "warning"}
	if s.opts.TLS != nil {
		args[1] = "0"
		args = append(args, "--tls-port", strconv.Itoa(s.port))
	}
	cmd := exec.Command(s.bin, append(args, s.args...)...)
	logFile := filepath.Join(s.t.TempDir(), "redis-server.log")
	if f, err := os.Create(logFile); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
		defer f.Close() // the child has its own descriptor
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	s.cmd = cmd
	opts := s.options()
	opts.MaxRetries = -1
	c := redis.NewClient(opts)
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
			out, _ := os.ReadFile(logFile)
			s.t.Fatalf("redistest: redis-server on %s does not answer: %v\n%s", s.Addr(), err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// String names the server for test logs.
func (s *Server) String() string { return fmt.Sprintf("redis-server on %s", s.Addr()) }
