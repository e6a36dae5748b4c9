//go:build linux

package media

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// socketSys is a Socket's descriptor, made with socket() and bind() alone:
// net.ListenUDP would add it to Go's netpoller (and an endpoint would then
// duplicate it and close the original to take it out again), five system
// calls more per leg for nothing.
type socketSys struct {
	mu     sync.Mutex
	fd     int
	family int
	closed bool
}

func (s *socketSys) listen(addr netip.AddrPort) (netip.AddrPort, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		// A wildcard address: let the net package pick the family (a
		// dual-stack socket), then take the descriptor out as NewEndpoint
		// does.
		return s.listenNet(addr)
	}
	var sa unix.Sockaddr
	if a.Is4() {
		s.family = unix.AF_INET
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: a.As4()}
	} else {
		s.family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(s.family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return netip.AddrPort{}, os.NewSyscallError("socket", err)
	}
	if s.family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			_ = unix.Close(fd)
			return netip.AddrPort{}, os.NewSyscallError("setsockopt", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return netip.AddrPort{}, &net.OpError{Op: "listen", Net: "udp", Addr: net.UDPAddrFromAddrPort(addr), Err: os.NewSyscallError("bind", err)}
	}
	s.fd = fd
	port := addr.Port()
	if port == 0 { // the kernel chose one
		bound, err := unix.Getsockname(fd)
		if err != nil {
			_ = unix.Close(fd)
			return netip.AddrPort{}, os.NewSyscallError("getsockname", err)
		}
		switch sa := bound.(type) {
		case *unix.SockaddrInet4:
			port = uint16(sa.Port)
		case *unix.SockaddrInet6:
			port = uint16(sa.Port)
		}
	}
	return netip.AddrPortFrom(a, port), nil
}

func (s *socketSys) listenNet(addr netip.AddrPort) (netip.AddrPort, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer conn.Close()
	raw, err := dupSocket(conn)
	if err != nil {
		return netip.AddrPort{}, err
	}
	s.fd, s.family = raw.fd, raw.family
	return unmapAddrPort(conn.LocalAddr().(*net.UDPAddr).AddrPort()), nil
}

func (s *socketSys) discard() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0
	}
	var b [1]byte
	n, errs := 0, 0
	for {
		// MSG_TRUNC: the datagram goes whole, whatever its length.
		_, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_DONTWAIT|unix.MSG_TRUNC, 0, 0)
		switch errno {
		case 0:
			n++
		case unix.EAGAIN:
			return n
		case unix.EINTR:
		default:
			// An error queued by the old call's sends (ECONNREFUSED after
			// an ICMP port unreachable) is consumed by the read that
			// reports it; a few in a row mean something else.
			if errs++; errs > 8 {
				return n
			}
		}
	}
}

func (s *socketSys) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return os.NewSyscallError("close", unix.Close(s.fd))
}

// startSocketIO reads the leg's Socket from one of the scheduler's epoll
// sets through a view of the descriptor that the endpoint's Close marks
// closed without closing the descriptor.
func (e *Endpoint) startSocketIO() error {
	raw := &rawSocket{fd: e.sock.sys.fd, family: e.sock.sys.family, borrowed: true}
	e.io.raw, e.out = raw, raw
	if err := e.sched.rx.add(&e.io, e, len(e.sched.shards), e.sched); err != nil {
		e.io.raw, e.out = nil, nil
		return err
	}
	return nil
}
