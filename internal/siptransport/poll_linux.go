//go:build linux

package siptransport

import (
	"net"
	"runtime"
	"syscall"
	"time"
)

// pollReader reads a datagram from a UDP socket without waiting for one.
// Its fields are the read loop's alone.
type pollReader struct {
	raw syscall.RawConn
	// zoneID and zone are the last IPv6 zone seen and its interface's
	// name: looking it up is a netlink request, too much for every
	// datagram from a link-local peer (Go's own ReadFrom caches it too).
	zoneID uint32
	zone   string
}

// newPollReader returns a pollReader for c, or nil when c is not a socket
// it can read that way (the listener then always blocks).
func newPollReader(c net.PacketConn) *pollReader {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	raw, err := u.SyscallConn()
	if err != nil {
		return nil
	}
	return &pollReader{raw: raw}
}

// read returns the next datagram waiting on the socket, with ok false when
// there is none. err is the socket's (closed, most often).
func (p *pollReader) read(b []byte) (n int, addr net.Addr, ok bool, err error) {
	var from syscall.Sockaddr
	var rerr error
	err = p.raw.Read(func(fd uintptr) bool {
		// Go's sockets are non-blocking: an empty one answers EAGAIN at
		// once. Returning true tells the runtime not to wait for it.
		n, from, rerr = syscall.Recvfrom(int(fd), b, 0)
		return true
	})
	if err != nil {
		return 0, nil, false, err
	}
	switch rerr {
	case nil:
	case syscall.EAGAIN, syscall.EINTR:
		return 0, nil, false, nil
	default:
		return 0, nil, false, &net.OpError{Op: "read", Net: "udp", Err: rerr}
	}
	switch sa := from.(type) {
	case *syscall.SockaddrInet4:
		return n, &net.UDPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: sa.Port}, true, nil
	case *syscall.SockaddrInet6:
		return n, &net.UDPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port, Zone: p.zoneName(sa.ZoneId)}, true, nil
	}
	return n, nil, true, nil
}

// sleep lets the goroutines the last datagram readied run, then sleeps d
// in the kernel: the thread blocks with its P, and no Go timer has to wake
// the program.
func (p *pollReader) sleep(d time.Duration) {
	runtime.Gosched()
	ts := syscall.NsecToTimespec(int64(d))
	_ = syscall.Nanosleep(&ts, nil) // an early wake-up only looks sooner
}

// zoneName is the name of the interface of index id, "" for none or one
// not found.
func (p *pollReader) zoneName(id uint32) string {
	if id == 0 {
		return ""
	}
	if id != p.zoneID {
		p.zoneID, p.zone = id, ""
		if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
			p.zone = ifi.Name
		}
	}
	return p.zone
}
