package redisorbit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/orbit"
)

// Who else is in the cluster, and who holds an orbit: what a node asks
// to send a retrieve where its call waits, and whom to trust.

// Peer is a live node of the cluster and the SIP address it advertises.
type Peer struct {
	Node      string
	Advertise string
}

// Peers returns the live nodes of the cluster, this one included.
func (a *Allocator) Peers(ctx context.Context) ([]Peer, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	flat, err := a.s.peers.Run(ctx, a.rdb, a.keys).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, a.unavailable(ctx, err)
	}
	peers := make([]Peer, 0, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		peers = append(peers, Peer{Node: flat[i], Advertise: flat[i+1]})
	}
	return peers, nil
}

// recentPeersAge is how old a list of peers RecentPeers hands out may be.
const recentPeersAge = time.Second

// RecentPeers returns the live nodes as read from Redis at most a second
// ago, for callers on a request's path (where a retrieve goes, whom to
// trust): one read a second however many ask. While Redis cannot be
// reached it returns the last list read.
func (a *Allocator) RecentPeers(ctx context.Context) []Peer {
	a.peersMu.Lock()
	defer a.peersMu.Unlock()
	if time.Since(a.peersAt) > recentPeersAge {
		if peers, err := a.Peers(ctx); err == nil {
			a.peers, a.peersAt = peers, time.Now()
		}
	}
	return a.peers
}

// Holder says which live node holds o and the SIP address it advertised;
// ok is false when o is free or its holder's lease has run out. While the
// call in o waits for another node to take it over (its node died or
// stopped), the error wraps orbit.ErrUnavailable: ask again in a moment.
func (a *Allocator) Holder(ctx context.Context, o orbit.Orbit) (node, advertise string, ok bool, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, requestWait, errSilent)
	defer cancel()
	res, err := a.s.holder.Run(ctx, a.rdb, a.keys, string(o)).Slice()
	if errors.Is(err, redis.Nil) {
		return "", "", false, nil
	}
	if redislot.ReplyCode(err) == redislot.CodeMoving {
		return "", "", false, fmt.Errorf("%w: orbit %s: its call is being taken over by another node", orbit.ErrUnavailable, o)
	}
	if err != nil {
		return "", "", false, a.unavailable(ctx, err)
	}
	if len(res) != 2 {
		return "", "", false, fmt.Errorf("redisorbit: holder returned %d values", len(res))
	}
	node, _ = res[0].(string)
	advertise, _ = res[1].(string)
	return node, advertise, true, nil
}
