// Package redisorbit shares one orbit lot among several park servers
// through Redis, as Lync Server 2013 shared one orbit table among the Front
// Ends of a pool: a call parked on one node holds its orbit for every node,
// and no two nodes ever hand out the same orbit.
//
// An Allocator is one node's share of the lot. It is an orbit.Allocator, so
// park.Config.Orbits takes it in place of the in-memory one; the park
// package itself never imports a Redis client. Every change is one Lua
// script (github.com/redis/go-redis/v9 runs it by EVALSHA): a claim pops
// the free orbit the policy chooses from a sorted set scored by release
// time or table order, atomically, never read-then-write. All keys of a
// lot live under the hash tag {callpark:<cluster>}, so the scripts stay
// legal on Redis Cluster.
//
// Each node holds a lease, a deadline checked against Redis' own clock
// (TIME, inside the scripts; never key-expiry events, which fire late),
// renewed every third of it. A node that falls silent past its lease
// (killed, paused, cut off) loses its orbits: the next script any node
// runs frees them and publishes a "node-down" message; an orbit whose call
// another node can continue is left as an orphan for a node to take over
// instead (takeover.go). Each incarnation of
// a node gets a fencing epoch when it joins; every claim and release names
// it, so a node that wakes up after its lease ran out can no longer touch
// the orbits it held: it is told which ones it lost (Config.OnLost, where
// the lot forgets the calls taken over and recalls the others:
// park.Lot.Disown) and joins again as a new incarnation.
//
// Redis being away is nobody's death: a gap in the lot's heartbeat (every
// script notes it) longer than two renewals of the slowest node moves every
// deadline by the gap, so nodes keep their orbits when Redis comes back with
// its data after longer than a lease.
//
// When Redis restarts empty, the first node to notice stores the table
// again and refuses new claims for one lease, while every node claims back
// the orbits its calls still sit in; an orbit another node took first is
// lost to its old holder. Once the node finds Redis unreachable, claims
// fail with orbit.ErrUnavailable (a park server answers 503) and nothing
// is taken from local memory.
//
// A park should not wait for Redis: each node claims a few orbits ahead
// (Config.ClaimAhead) and Allocate hands them out without a round trip
// while the node's lease is certainly alive; ahead.go says what that
// costs a directed park and a nearly full lot, and how both are bounded.
//
// It needs Redis 6.2 or later (ZRANDMEMBER, scripts that write after TIME).
package redisorbit
