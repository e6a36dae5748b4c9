// Package redispark shares a park lot's calls among several park servers
// through Redis: the record of every parked call, readable by every node,
// and the lot's events, heard by every node. With an orbit/redisorbit
// allocator it makes one lot of many nodes, as Lync Server 2013's pool
// shared one orbit table among its Front Ends: a call parked on node A is
// retrieved at node B (the lot at B answers with a park.ElsewhereError
// naming A), shown on a BLF key subscribed at node C, and listed by every
// node's park.Lot.Calls.
//
// A Directory is the lot's park.Cluster: park.Config{Orbits: allocator,
// Cluster: directory}. It writes each event of its own lot in order, from
// a goroutine of its own, in one Lua script that stores the call's record
// and publishes the event only while this incarnation of the node holds
// the orbit (a node that lost its lease writes nothing). When Redis cannot
// be reached, it keeps its calls and writes them all again once Redis
// answers. It follows the other nodes on the lot's pub/sub channel, and
// after every (re)subscription, since pub/sub drops what was said in
// between, it reads the whole lot again and tells its observers what
// changed.
//
// A parked call outlives its node (CLUSTER.md 9-12, takeover.go). Each
// record carries the leg's handoff (park.Portable) beside the lot's view of
// the call. When a node is dropped (its lease ran out) or hands its calls
// over (it stops), its calls that can be continued wait as orphans; the
// live nodes whose lots take calls over (park.Config.Adopter) claim their
// share, one fenced claim per call, and the lot continues each one. The
// calls that cannot be continued end for the observers with outcome
// park.Lost, as do orphans nobody takes.
//
// A handoff holds what continues a party's dialog. With Config.HandoffKey,
// a key every node of the cluster shares, each is sealed where it enters
// Redis (AES-256-GCM, a fresh nonce per write, bound to its cluster, orbit
// and park ID: seal.go), so that neither a reader of Redis learns a
// dialog's identifiers nor a writer plants a handoff. A node that cannot
// open one (no key, another key, or a handoff in the clear where it has a
// key) logs an error and the call ends as park.Lost. No SRTP key is ever
// in a handoff: the node taking a call over offers a fresh key of its own.
package redispark
