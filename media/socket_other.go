//go:build !linux

package media

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
)

// socketSys is a Socket's *net.UDPConn: elsewhere than Linux every leg
// goes through Go's netpoller.
type socketSys struct {
	conn *net.UDPConn
}

func (s *socketSys) listen(addr netip.AddrPort) (netip.AddrPort, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return netip.AddrPort{}, err
	}
	s.conn = conn
	return unmapAddrPort(conn.LocalAddr().(*net.UDPAddr).AddrPort()), nil
}

func (s *socketSys) discard() int {
	if err := s.conn.SetReadDeadline(time.Now()); err != nil {
		return 0
	}
	defer s.conn.SetReadDeadline(time.Time{})
	buf := make([]byte, readBufferSize)
	n, errs := 0, 0
	for {
		_, _, err := s.conn.ReadFromUDPAddrPort(buf)
		switch {
		case err == nil:
			n++
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed):
			return n
		default:
			// An ICMP error the old call's sends queued; a few in a row
			// mean something else.
			if errs++; errs > 8 {
				return n
			}
		}
	}
}

func (s *socketSys) close() error { return s.conn.Close() }

// startSocketIO reads the leg's Socket with a goroutine of its own, as
// NewEndpoint's legs are read here.
func (e *Endpoint) startSocketIO() error {
	e.conn = e.sock.sys.conn
	e.startNetpoll()
	return nil
}
