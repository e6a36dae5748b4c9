package sipadapter

import (
	"context"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// A parked call keeps what its recall needs: an RTP port. Without one a
// recall that came when every port was taken found none, and the call was
// dropped. Every park the engine makes first reserves a port in the pool
// (PortPool.reserve), which new legs may not take; the recall (and the
// fallback) take it (acquireReserved), and the reservation goes when the
// call leaves the lot. A park that cannot reserve one is refused (503), as
// it would be for want of a port for the leg itself.

// parkLeg parks a call with a port kept for its recall.
func (e *Engine) parkLeg(ctx context.Context, req park.ParkRequest) (*park.Call, error) {
	if err := e.ports.reserve(); err != nil {
		return nil, err
	}
	call, err := e.lot.Park(ctx, req)
	if err != nil {
		e.ports.unreserve()
		return nil, err
	}
	e.mu.Lock()
	e.parked[call.ID()] = &parkedCall{}
	e.mu.Unlock()
	// The call may have ended already, its EventEnded seen before it was
	// recorded: then nobody else gives the reservation back.
	select {
	case <-call.Done():
		e.releaseRecallPort(call.ID())
	default:
	}
	return call, nil
}

// keepsRecallPort reports whether the parked call parkID holds a
// reservation for its recall.
func (e *Engine) keepsRecallPort(parkID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.parked[parkID]
	return ok
}

// keepsRecallPortAt reports whether the call parked in orbit o holds a
// reservation.
func (e *Engine) keepsRecallPortAt(o orbit.Orbit) bool {
	info, ok := e.lot.Lookup(o)
	return ok && e.keepsRecallPort(info.ParkID)
}

// parkedCall is what the engine keeps of a call it parked, until the call
// leaves the lot: a port reserved for its recall, always, and the device
// its parker parked it from, when that parker sent a REFER (recall.go).
type parkedCall struct {
	device *parkerDevice
}

// releaseRecallPort forgets a call that has left the lot and gives back its
// reservation, once.
func (e *Engine) releaseRecallPort(parkID string) {
	e.mu.Lock()
	_, ok := e.parked[parkID]
	delete(e.parked, parkID)
	e.mu.Unlock()
	if ok {
		e.ports.unreserve()
	}
}

// observeEnds forgets the calls that leave the lot (ended, or moved to
// another node), and tells the Notify addresses of parks and ends.
func (e *Engine) observeEnds(ev park.Event) {
	e.notifyWatchers(ev)
	e.pageOnPark(ev)
	if ev.Kind == park.EventEnded || ev.Call.State == park.Moved {
		e.releaseRecallPort(ev.Call.ParkID)
	}
}
