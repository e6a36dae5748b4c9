// Package sipadapter is the SIP side of a park.Lot: a call park application
// server built on sipgo, which a PBX reaches the way Asterisk and FreeSWITCH
// parking lots are reached. It is the only package of callpark that knows
// SIP; docs/SIP-CONTRACT.md is its promise on the wire, flow by flow.
//
// A vendor gives it the lot's configuration, the orbit ranges, a listen
// address, a media address and an RTP port range ([Config]), and gets a
// working server ([New], [Server.Listen], [Server.Shutdown]):
//
//   - INVITE to the park extension parks the caller (200 OK with
//     X-Park-Orbit, music within 200 ms of the ACK, MESSAGE "Parked at
//     <orbit>" to the parker named by Referred-By).
//   - INVITE to a free orbit with Referred-By parks there (directed park);
//     to an occupied orbit without Referred-By it retrieves the call and the
//     server relays RTP between the two, transcoding PCMU/PCMA.
//   - REFER inside a relayed call re-parks the other party (RFC 3515: 202,
//     NOTIFY sipfrag 100, final NOTIFY 200 with X-Park-Orbit).
//   - INVITE with Replaces takes over a parked consult call (attended
//     transfer into park, RFC 3891), keeping its orbit and timer.
//   - The lot's recalls and fallback are INVITEs from a new RTP port,
//     cancelled when the ring time runs out or a retrieve wins.
//   - SUBSCRIBE for the dialog event package on an orbit, or on the park
//     extension for the whole lot, gives BLF (RFC 4235 NOTIFYs, version + 1
//     on every change).
//   - Re-INVITEs are matched to their dialog by Call-ID and tags (sipgo's
//     ReadInvite would overwrite the To tag) and answered with the leg's
//     current SDP; a hold stops the music until the resume.
//   - An INVITE without SDP (delayed offer) gets 488 unless
//     [Config.AcceptLateOffer]: then the 200 carries the offer and the ACK
//     the answer.
//
// Lot errors become status codes here and nowhere else: a full lot or an
// occupied orbit is 486, an unknown or empty orbit 404, a shutting-down lot
// or no free RTP port 503, an offer without G.711 488.
//
// A host PBX that embeds the lot in its own SIP handlers, instead of running
// a Server beside it, reuses the pieces the Server is built from, so that its
// phones see the same answers: [callLeg] is a call leg (a dialog and its RTP
// endpoint) that the lot can hold and [bridgeLegs] joins to another,
// [LegMedia] answers a new INVITE's offer (or refuses it) and makes the
// offer of a call placed, [BLF]
// serves the park keys' SUBSCRIBEs, [PortPool] hands out RTP ports,
// [statusFor] turns lot errors into responses, [referredBy] names the
// parker, [parseReplaces] reads an attended transfer's Replaces,
// [notifyRefer] with [parkedSipfrag] or [statusSipfrag] reports a transfer
// into park, [waitAnswer] rings an INVITE the way recalls ring (CANCEL at
// the ring time, give up on a target that never answered), [sipDialog]
// sends in-dialog requests whichever side began the dialog, and
// [RouteSources] makes every request of a sipgo client leave from the right
// socket (the listener over UDP, a connection to the target over TCP). The Server uses
// each of them itself: there is one implementation of each rule.
// examples/pbx is such a host.
//
// Under load, sipgo's transaction timers decide much of the memory: a
// program serving a thousand calls a second should shorten Timers L and M
// as examples/internal/siptune does (BENCHMARKS.md has the figures).
package sipadapter
