//go:build !linux

package media

import "time"

// Elsewhere than Linux every leg is read through Go's netpoller, by a
// goroutine of its own (Endpoint.readLoop), and sends through its
// *net.UDPConn.

type rxSet struct{}

func (*rxSet) close() {}

type endpointIO struct{}

func (e *Endpoint) startIO() { e.startNetpoll() }

func (e *Endpoint) stopIO() error {
	if e.sock == nil {
		return e.stopNetpoll()
	}
	// A Socket's conn stays open: a past deadline ends the read, and the
	// next leg's endpoint clears it.
	e.stopRead.Store(true)
	_ = e.conn.SetReadDeadline(time.Unix(1, 0))
	<-e.done
	return e.conn.SetReadDeadline(time.Time{})
}
