// Package sipadapter is the SIP side of a park.Lot, on sipgo: the one
// package of callpark that knows SIP, so that a vendor's own switch and the
// standalone park server answer a phone alike. docs/SIP-CONTRACT.md is its
// promise on the wire, flow by flow.
//
// Two ways in:
//
//   - [Server] is a park server: give it a listen address, orbits and RTP
//     ports ([Config]), or a lot and a sipgo user agent of your own, and
//     call [Server.Listen] and [Server.Shutdown]. examples/parkserver is a
//     Server behind flags.
//   - [Engine] is the park half of a host's own SIP stack (examples/pbx):
//     it owns the call legs and every park flow, and the host hands it its
//     requests ([Engine.Handle]) and says only what a host knows, as
//     [EngineConfig]'s hooks: who is calling (Admit), what an INVITE that
//     is not park business becomes (Calls, with [Engine.Connect] to ring an
//     extension), and where a URI of its rings (Locate). A Server is a
//     listener bound to an Engine.
//
// The flows, in the engine, once for both:
//
//   - INVITE to the park extension parks the caller (200 OK with
//     X-Park-Orbit, music within 200 ms of the ACK, MESSAGE "Parked at
//     <orbit>" to the parker named by Referred-By).
//   - INVITE to a free orbit with Referred-By parks there (directed park);
//     to an occupied orbit without Referred-By it retrieves the call, which
//     the engine then relays, transcoding PCMU/PCMA.
//   - REFER inside a relayed call re-parks the other party (RFC 3515: 202,
//     NOTIFY sipfrag 100, final NOTIFY 200 with X-Park-Orbit); with
//     Replaces naming a parked call, the other party takes it over; to a
//     URI the host locates, it is a blind transfer.
//   - INVITE with Replaces takes over a parked consult call (attended
//     transfer into park, RFC 3891), keeping its orbit and timer.
//   - The lot's recalls and fallback ring from a port the parked call kept
//     for them: the parker's phones (Locate), the device that parked by
//     REFER, or the parker's URI through the outbound proxy; never the
//     server's own listener.
//   - SUBSCRIBE for the dialog event package on an orbit, or on the park
//     extension for the whole lot, gives BLF (RFC 4235).
//   - Re-INVITEs are answered from the leg's own media; a hold stops the
//     music until the resume. An INVITE without SDP (delayed offer) gets
//     488 unless AcceptLateOffer.
//   - Shutdown drains: new parks get 503, parked calls are recalled at
//     once, and relayed calls go on until their parties hang up or the
//     context ends.
//   - In a cluster (a lot with park.Config.Cluster, several nodes on one
//     Redis), a retrieve for a call parked on another node is forwarded
//     to that node as a stateful proxy without Record-Route, or answered
//     302 (EngineConfig.CrossNode); a node that does not answer is 480,
//     and a shared lot that cannot be reached is 503 with Retry-After.
//   - Parked legs are park.Portable: another node continues a parked call
//     with an in-dialog re-INVITE from its own address (Engine.Adopt,
//     handoff.go) when the node holding it dies or stops.
//
// Lot errors become status codes here and nowhere else: a full lot or an
// occupied orbit is 486, an unknown or empty orbit 404, a shutting-down lot,
// an unreachable shared lot or no free RTP port 503, an offer without G.711
// 488.
//
// Under load, sipgo's transaction timers decide much of the memory: a
// program serving a thousand calls a second should shorten Timers L and M
// as examples/internal/siptune does (BENCHMARKS.md has the figures).
package sipadapter
