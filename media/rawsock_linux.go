//go:build linux

package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux an endpoint's socket leaves Go's netpoller. The netpoller
// registers every socket for EPOLLIN and EPOLLOUT, edge-triggered, so each
// packet a leg sends wakes it once more when the kernel frees the buffer
// (sock_wfree), for an event nobody waits for: about 15 % of a park server's
// CPU at 2,000 parked calls (BENCHMARKS.md). Here the leg's socket is a
// duplicate file descriptor that only this package's epoll sets watch, for
// EPOLLIN only; packets go out with a plain sendto, and a few goroutines per
// Scheduler (rxSet) read every leg instead of one goroutine per leg.

// rawSocket is a leg's UDP socket as a bare file descriptor. mu keeps the
// descriptor from being closed (and its number reused by another socket)
// while a send or a read is using it.
type rawSocket struct {
	mu     sync.RWMutex
	fd     int
	family int // AF_INET or AF_INET6
	closed bool
	// borrowed is a view of a Socket's descriptor: close only stops its
	// use through this view, the Socket keeps the descriptor.
	borrowed bool
}

// dupSocket duplicates conn's descriptor. The duplicate shares the socket
// (and its non-blocking mode); conn stays open and the caller's.
func dupSocket(conn *net.UDPConn) (*rawSocket, error) {
	sc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	s := &rawSocket{fd: -1}
	var serr error
	if err := sc.Control(func(fd uintptr) {
		s.fd, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if serr != nil {
			return
		}
		s.family, serr = unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		serr = err
	}
	if serr == nil && s.family != unix.AF_INET && s.family != unix.AF_INET6 {
		serr = fmt.Errorf("socket family %d", s.family)
	}
	if serr != nil {
		if s.fd >= 0 {
			_ = unix.Close(s.fd)
		}
		return nil, serr
	}
	return s, nil
}

// errAddressFamily is a destination the socket cannot reach (an IPv6
// address from an IPv4 socket), or an invalid one.
var errAddressFamily = os.NewSyscallError("sendto", unix.EAFNOSUPPORT)

// WriteToUDPAddrPort sends b to addr with one sendto, without waiting: a
// full send buffer (EAGAIN) is an error, the packet is dropped, as a
// scheduler must never stall on one leg.
//
// sendto and recvfrom are raw system calls (no entersyscall/exitsyscall):
// on a non-blocking socket they return at once, so the runtime has nothing
// to hand off meanwhile, and skipping that bookkeeping took 7 % of the CPU
// per packet off BenchmarkEndpointMusic/epoll/5000 (5.8 -> 5.4 us).
func (s *rawSocket) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	a := addr.Addr()
	switch {
	case !a.IsValid():
		return 0, errAddressFamily
	case s.family == unix.AF_INET:
		if !a.Unmap().Is4() {
			return 0, errAddressFamily
		}
		sa4.Family = unix.AF_INET
		putPort(&sa4.Port, addr.Port())
		sa4.Addr = a.Unmap().As4()
		sa, salen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	default:
		sa6.Family = unix.AF_INET6
		putPort(&sa6.Port, addr.Port())
		sa6.Addr = a.As16() // IPv4 becomes IPv4-mapped, as a dual-stack socket wants
		sa, salen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	}
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, net.ErrClosed
	}
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), 0, uintptr(sa), salen)
		switch errno {
		case 0:
			return len(b), nil
		case unix.EINTR:
			continue
		}
		return 0, os.NewSyscallError("sendto", errno)
	}
}

// recvFrom reads one datagram into buf without waiting; unix.EAGAIN when
// there is none.
func (s *rawSocket) recvFrom(buf []byte) (int, netip.AddrPort, error) {
	var rsa unix.RawSockaddrAny
	salen := uint32(unix.SizeofSockaddrAny)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, netip.AddrPort{}, net.ErrClosed
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			0, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&salen)))
		switch errno {
		case 0:
			return int(n), sockaddrAddrPort(&rsa), nil
		case unix.EINTR:
			continue
		}
		return 0, netip.AddrPort{}, errno
	}
}

// close closes the descriptor once no send or read is using it.
func (s *rawSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.borrowed {
		return nil
	}
	return os.NewSyscallError("close", unix.Close(s.fd))
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// sockaddrAddrPort reads the source address recvfrom filled in.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(b[0])<<8|uint16(b[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		b := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(b[0])<<8|uint16(b[1]))
	}
	return netip.AddrPort{}
}

// isTemporary reports a read error that only means "nothing to read".
func isTemporary(err error) bool {
	return errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)
}
