package park

import (
	"context"
	"errors"
	"fmt"

	"github.com/callpark/callpark/orbit"
)

// Cluster connects a lot to the other park servers (nodes) that share its
// orbits, as the Front Ends of a Lync pool shared one orbit table. The lot
// hands it its own events to share and asks it about calls parked
// elsewhere; park/redispark implements it on Redis, beside an
// orbit/redisorbit allocator in Config.Orbits. Nil (the default): the lot
// is alone.
type Cluster interface {
	// Observe receives this lot's own events, in order, to share with the
	// other nodes. Like any observer it must not block for long.
	Observer

	// Follow delivers the other nodes' events to o, each with
	// CallInfo.Node set, in order per call, until stop is called. An event
	// missed while the node could not hear is delivered when it hears
	// again, as the lot then is: an EventEnded learnt that way has
	// Outcome NoOutcome, since how the call left was not heard.
	Follow(o Observer) (stop func())

	// Calls returns the calls parked on other nodes as last heard, each
	// with CallInfo.Node set. It does not wait for the network.
	Calls() []CallInfo

	// Lookup returns the call parked in o on another node as last heard,
	// as Calls would list it; it does not wait for the network either.
	Lookup(o orbit.Orbit) (CallInfo, bool)

	// Locate asks the cluster which other node holds orbit o now and the
	// address that node takes requests on (a SIP host:port): the answer
	// a retrieve at this node needs to reach the call. It returns an
	// error wrapping ErrNotParked when no other node holds o, and one
	// wrapping orbit.ErrUnavailable when the cluster cannot be asked.
	Locate(ctx context.Context, o orbit.Orbit) (node, addr string, err error)

	// TakeOver has this lot continue calls of other nodes that died or
	// stopped (CLUSTER.md 10-11), until stop is called. For each call the
	// cluster claims for this node (fenced: one node per call; its orbit
	// is then held by this node), it calls take with the call as its old
	// node last wrote it, Handoff set (nil when the cluster could not read
	// it: the call then ends as Lost). take returns once the call is
	// parked here or has ended as Lost; ErrClosed when the lot took
	// nothing (it is shutting down), and the cluster then offers the call
	// to another node. NewLot calls it when Config.Adopter is set.
	TakeOver(take func(ctx context.Context, c CallInfo) error) (stop func())

	// HandOver offers calls of this node to the other nodes when it stops
	// (Shutdown, CLUSTER.md 11), as if it had died: each goes to one of
	// them. It returns, within ctx, the park IDs another node took, each
	// with that node's name; the lot forgets those (their dialogs belong
	// to the new node) and recalls the others. With no other node alive
	// it takes none at once.
	HandOver(ctx context.Context, calls []CallInfo) (taken map[string]string, err error)
}

// ErrElsewhere: the orbit's call is parked on another node of the cluster.
// Retrieve returns it as an *ElsewhereError, which says where to send the
// retrieve (a SIP host proxies it there or redirects the caller).
var ErrElsewhere = errors.New("park: call parked on another node")

// ElsewhereError reports a retrieve for a call parked on another node.
type ElsewhereError struct {
	Orbit orbit.Orbit
	Node  string // the node holding the call
	Addr  string // where that node takes requests, as it advertised it
}

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("park: orbit %s is held by node %s at %s", e.Orbit, e.Node, e.Addr)
}

// Unwrap makes every ElsewhereError match ErrElsewhere.
func (e *ElsewhereError) Unwrap() error { return ErrElsewhere }

// Locate says where the call a retrieve asks for waits, without taking it:
// nil when it is in this lot (Retrieve will hand it over, unless someone
// else is faster), an *ElsewhereError naming the node that holds it in a
// cluster, and otherwise the error Retrieve would return (ErrNotParked,
// ErrUnknownOrbit, ErrNotAuthorized, orbit.ErrUnavailable). A SIP host asks
// before it answers the retriever, so that a retrieve for another node is
// sent there instead.
//
// Config.AuthorizeRetrieve is asked here only when the answer is not nil,
// before the orbit says anything, as Retrieve asks it: a call waiting in
// this lot is left to the Retrieve that follows, so the hook runs once.
func (l *Lot) Locate(ctx context.Context, req RetrieveRequest) error {
	l.mu.Lock()
	c := l.byOrbit[req.Orbit]
	l.mu.Unlock()
	if c != nil && (req.ParkID == "" || req.ParkID == c.id) {
		l.mu.Lock()
		handing := c.handing
		l.mu.Unlock()
		if handing {
			return errHanding(c.orbit)
		}
		return nil
	}
	if err := l.authorizeRetrieve(ctx, req); err != nil {
		return err
	}
	if c != nil {
		return fmt.Errorf("orbit %s holds park ID %s, not %s: %w", req.Orbit, c.id, req.ParkID, ErrStale)
	}
	if !l.knows(req.Orbit) {
		return fmt.Errorf("orbit %q: %w", req.Orbit, ErrUnknownOrbit)
	}
	return l.locate(ctx, req.Orbit)
}

// locate answers a retrieve for an orbit this lot does not hold.
func (l *Lot) locate(ctx context.Context, o orbit.Orbit) error {
	if l.cfg.Cluster == nil {
		return fmt.Errorf("orbit %s: %w", o, ErrNotParked)
	}
	node, addr, err := l.cfg.Cluster.Locate(ctx, o)
	if err != nil {
		return err
	}
	return &ElsewhereError{Orbit: o, Node: node, Addr: addr}
}

// remoteLookup finds o among the calls parked on other nodes.
func (l *Lot) remoteLookup(o orbit.Orbit) (CallInfo, bool) {
	if l.cfg.Cluster == nil {
		return CallInfo{}, false
	}
	return l.cfg.Cluster.Lookup(o)
}
