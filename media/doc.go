// Package media is what a parked caller hears and how two legs talk once the
// call is retrieved: audio sources, G.711, RTP pacing, SDP and the relay.
//
// It exists because call park is mostly waiting, and waiting is media: a park
// server with a thousand parked calls sends fifty thousand packets of hold
// music a second, and must keep doing it on time while calls come and go. So
// the package is built around sharing and pacing rather than per-call work:
//
//   - A [Clip] is 8 kHz mono PCM: the built-in music ([BuiltinMusic],
//     generated in code), a [Tone], or a WAV file ([LoadWAV], 16-bit PCM at
//     8 to 48 kHz, mono or stereo, resampled at load time).
//   - [Clip.Frames] encodes it once per [Codec] (PCMU, PCMA) into 20 ms
//     [Frames] that every stream shares read-only.
//   - One [Scheduler] paces every stream from a few goroutines (one per
//     core), on absolute deadlines, allocating nothing per packet: not a
//     goroutine and a ticker per call. Each [Stream] follows RFC 3550 as the
//     SIP contract asks: random SSRC, sequence and timestamp; +1 and +160 per
//     packet; the marker bit on the first packet and after each resume.
//   - An [Endpoint] is one call leg's RTP port: it plays music through the
//     scheduler, learns where the phone really sends from (symmetric RTP),
//     and [Bridge] relays two endpoints with PCMU/PCMA transcoding and
//     telephone-event (RFC 4733) passthrough. On Linux its socket is kept
//     out of Go's netpoller: a few goroutines per scheduler read every leg
//     from epoll sets watching for input only, and packets leave with a
//     plain sendto, so no packet sent wakes the runtime.
//   - A [SharedPort] is one UDP port for many legs, told apart by the
//     peer's address (latching to a NAT's address once, dropping strays
//     of unknown and finished calls); on Linux the scheduler sends its
//     legs' music in sendmmsg batches, a system call per 64 packets.
//   - [Prompts] are spoken clips (digits, star, pound, a few phrases),
//     embedded ([DefaultPrompts], made by espeak-ng at go generate time)
//     or replaced from WAV files ([LoadPrompts]); [SpokenOrbit] is the one
//     place an orbit becomes the prompts that say it, and [Sequence] joins
//     their shared frames for [Endpoint.Announce], which says them once
//     and goes back to the music.
//   - [ParseOffer], [Answer], [NewOffer] and [ParkedDirection] do the RFC
//     3264 offer/answer for a G.711 audio stream with pion/sdp/v3, including
//     hold detection; an offer without G.711 is [ErrNoCommonCodec].
//
// The package knows nothing of SIP or of the park lifecycle, and opens no
// socket of its own: callers hand it their UDP sockets.
package media
