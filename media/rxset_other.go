//go:build !linux

package media

// Elsewhere than Linux every leg is read through Go's netpoller, by a
// goroutine of its own (Endpoint.readLoop), and sends through its
// *net.UDPConn.

type rxSet struct{}

type endpointIO struct{}

func (e *Endpoint) startIO() { e.startNetpoll() }

func (e *Endpoint) stopIO() error { return e.stopNetpoll() }
