// Package park is the life of a parked call, with no SIP in it: a [Lot] puts
// a call into an orbit, hands it to whoever retrieves it, rings it back to the
// parker when nobody does, then tries the fallback, then lets it go.
//
// It exists so that a PBX with its own SIP stack can offer call park the way
// Lync Server 2013 did, and better, by supplying three small things the lot
// cannot know: the parked call's [Leg] (hold it, hang it up), a [Dialer] that
// rings a recall or fallback target and returns the [Answered] call, and optionally
// an [orbit.Allocator] shared with other park servers. The sipadapter package
// is one such host; examples/embed is another, in memory.
//
// # Lync Server 2013's behaviour, and where it lives
//
//   - Orbit numbering, ranges and how a free orbit is chosen: package orbit.
//   - Pickup timeout (CallPickupTimeoutThreshold, 10 s to 10 min, default
//     90 s), recall attempts (MaxCallPickupAttempts, 1 to 10, default 1), the
//     ring time of each recall (default 30 s), the fallback (OnTimeoutURI) and
//     music on hold (EnableMusicOnHold): [Config], with the limits as
//     constants beside it.
//   - The order of things after a timeout: [Call] (ring, in call.go): each
//     recall rings the parker for RecallRingTime; a refusal ends an attempt
//     at once; after the last one the fallback rings; when nobody answers the
//     call is dropped. No parker known: straight to the fallback.
//   - An orbit is free as soon as its call leaves it: retrieved, hung up, or
//     answered by a recall or the fallback.
//
// # What it adds to Lync
//
//   - Directed park: [ParkRequest].Orbit reserves exactly that orbit,
//     atomically; an occupied orbit is [ErrOrbitInUse], never a pickup.
//   - Safe retrieve: [RetrieveRequest].ParkID makes a retrieve fail with
//     [ErrStale] rather than hand over a different call that now sits in the
//     orbit (Lync offered this only in its client SDK).
//   - Exactly one outcome per call ([Retrieved], [Recalled], [Forwarded],
//     [Abandoned], [Dropped], and in a cluster [Lost]), decided under one mutex whatever races between
//     retrieve, hang-up and the timers; a retrieve beats a ringing recall.
//   - Every change is an [Event] for observers, in order; [Lot.Calls] is a
//     snapshot of what is parked.
//   - [Lot.Shutdown] loses no call: each is recalled at once (then the
//     fallback, else dropped) and Shutdown returns when all have ended.
//   - One lot over several park servers: with a shared allocator in
//     [Config].Orbits and a [Cluster] (orbit/redisorbit and park/redispark
//     on Redis), no two nodes hold one orbit, [Lot.Lookup], [Lot.Calls]
//     and [Lot.Observe] span every node, and a retrieve of a call parked
//     elsewhere is an [ElsewhereError] that names the node to send it to.
//   - A parked call outlives its node: in a cluster a [Portable] leg's
//     handoff is shared, and when its node dies, is fenced or shuts down,
//     another node's lot continues it through its [Adopter] in the same
//     orbit, with the same park ID, parker and recall time ([EventMoved]);
//     takeover.go tells how.
//
// Time comes from the runtime clock, so tests run the lot inside
// testing/synctest and a 90 s timeout passes in microseconds.
package park
