package media

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"
)

// Errors of the RTP engine (scheduler, streams, endpoints, relay). They are
// wrapped with the offending field or value; test them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Scheduler or Endpoint.
	ErrClosed = errors.New("media: closed")
	// ErrBridged is returned when an endpoint is already part of a relay:
	// Bridge on a bridged endpoint, or PlayMusic while bridged.
	ErrBridged = errors.New("media: endpoint is bridged")
	// ErrInvalidArgument is returned for a nil writer or frames, a bad codec or
	// payload type, or bridging an endpoint to itself.
	ErrInvalidArgument = errors.New("media: invalid argument")
)

const (
	// rtpHeaderSize is the fixed RTP header (RFC 3550 §5.1). It is the only
	// header this package sends: no CSRC list, no extension, no padding.
	rtpHeaderSize = 12
	// rtpVersion is the only RTP version in use since RFC 1889.
	rtpVersion = 2
	// readBufferSize bounds one datagram read from a leg. G.711 packets are
	// 172 bytes at 20 ms; a datagram that fills the buffer was truncated and is
	// not taken for RTP.
	readBufferSize = 2048
)

// rtpView is the part of an incoming RTP packet the relay needs, parsed
// without allocating. The payload is pkt[payloadStart:payloadEnd] (padding
// excluded).
type rtpView struct {
	marker       bool
	payloadType  uint8
	seq          uint16
	timestamp    uint32
	ssrc         uint32
	payloadStart int
	payloadEnd   int
}

// rtpHeaderOK is parseRTP's first check, which an SRTP packet passes before
// it is decrypted (its padding is encrypted): version 2, no RTCP.
func rtpHeaderOK(pkt []byte) bool {
	if len(pkt) < rtpHeaderSize || pkt[0]>>6 != rtpVersion {
		return false
	}
	pt := pkt[1] & 0x7f
	return pt < 72 || pt > 76
}

// parseRTP reads the RTP header of pkt (RFC 3550 §5.1). It reports false for
// anything a call leg must ignore: too short, version other than 2, header
// or padding running past the end, and RTCP multiplexed on the RTP port,
// whose packet types 200-204 read as payload types 72-76 once the marker bit
// is masked (RFC 5761 §4). Header extensions are skipped, not interpreted.
func parseRTP(pkt []byte) (rtpView, bool) {
	if len(pkt) < rtpHeaderSize || pkt[0]>>6 != rtpVersion {
		return rtpView{}, false
	}
	pt := pkt[1] & 0x7f
	if pt >= 72 && pt <= 76 {
		return rtpView{}, false
	}
	start := rtpHeaderSize + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < start+4 {
			return rtpView{}, false
		}
		start += 4 + 4*int(binary.BigEndian.Uint16(pkt[start+2:]))
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 {
		// The last byte counts the padding, itself included (RFC 3550 §5.1).
		if end <= start {
			return rtpView{}, false
		}
		pad := int(pkt[end-1])
		if pad == 0 {
			return rtpView{}, false
		}
		end -= pad
	}
	if start > end {
		return rtpView{}, false
	}
	return rtpView{
		marker:       pkt[1]&0x80 != 0,
		payloadType:  pt,
		seq:          binary.BigEndian.Uint16(pkt[2:]),
		timestamp:    binary.BigEndian.Uint32(pkt[4:]),
		ssrc:         binary.BigEndian.Uint32(pkt[8:]),
		payloadStart: start,
		payloadEnd:   end,
	}, true
}

// sendable reports whether dst is somewhere packets can go. A zero address,
// port 0 or 0.0.0.0 (the RFC 2543 hold address) means "send nothing yet":
// symmetric RTP or a re-INVITE may supply a real one later.
func sendable(dst netip.AddrPort) bool {
	return dst.IsValid() && dst.Port() != 0 && !dst.Addr().IsUnspecified()
}

// rtpClock maps wall time to RTP timestamps at 8 kHz in whole 20 ms steps:
// the timestamp ts belongs to instant at, and every FrameDuration later adds
// SamplesPerFrame. Counting whole steps keeps timestamps on the 160-sample
// grid a receiver's jitter buffer expects.
type rtpClock struct {
	ts uint32
	at time.Time
}

// timestampAt returns the clock's timestamp at t, t before c.at included
// (floored, so it never runs ahead of the clock).
func (c rtpClock) timestampAt(t time.Time) uint32 {
	d := t.Sub(c.at)
	steps := int64(d / FrameDuration)
	if d < 0 && d%FrameDuration != 0 {
		steps--
	}
	// uint32 arithmetic wraps exactly like RTP timestamps do.
	return c.ts + uint32(steps)*SamplesPerFrame
}

// txState is one call leg's outgoing RTP identity. A leg keeps one SSRC for
// its whole life and hands this state from the music stream to the relay and
// back, so the far end sees one continuous stream: sequence numbers without
// gaps, timestamps that follow the wall clock, a marker where it restarts.
type txState struct {
	ssrc   uint32
	seq    uint16   // sequence number of the next packet
	clock  rtpClock // timestamp clock for the next packet
	lastTS uint32   // timestamp of the newest packet sent
	sent   bool     // whether lastTS holds a sent packet's timestamp
	// marker asks for the marker bit on the next relayed packet: the leg
	// resumed after a hold.
	marker bool
	relay  relayMapping
}

// relayMapping maps the sequence numbers and timestamps of the packets a leg
// relays from one source SSRC onto the leg's own, by constant offsets, so
// reordering and loss on the way in stay visible to the receiver.
type relayMapping struct {
	active    bool
	ssrc      uint32 // source the offsets were set for
	seqOffset uint16
	tsOffset  uint32
	lastInSeq uint16 // newest source sequence number seen
}

// newTxState returns a fresh identity: random SSRC, first sequence number
// and first timestamp (RFC 3550 §5.1, so that known-plaintext attacks on
// encryption and collisions between streams are unlikely).
func newTxState(now time.Time) txState {
	return txState{
		ssrc:  rand.Uint32(),
		seq:   uint16(rand.Uint32()),
		clock: rtpClock{ts: rand.Uint32(), at: now},
	}
}

// timestampAt returns the timestamp for a packet sent at t, at least one
// frame after the newest one sent, so a handover never repeats or rewinds
// a timestamp.
func (tx *txState) timestampAt(t time.Time) uint32 {
	ts := tx.clock.timestampAt(t)
	if tx.sent && int32(ts-tx.lastTS) < SamplesPerFrame {
		ts = tx.lastTS + SamplesPerFrame
	}
	return ts
}

// mapRelayed returns the sequence number and timestamp under which the
// packet v from the other leg goes out of this one. The first packet of a
// source (after Bridge, or when the source's SSRC changes) sets the offsets
// so that the leg's own sequence and clock continue; first reports it, and
// the caller sets the marker bit.
func (tx *txState) mapRelayed(v rtpView, now time.Time) (seq uint16, ts uint32, first bool) {
	m := &tx.relay
	if !m.active || m.ssrc != v.ssrc {
		*m = relayMapping{
			active:    true,
			ssrc:      v.ssrc,
			seqOffset: tx.seq - v.seq,
			tsOffset:  tx.timestampAt(now) - v.timestamp,
			lastInSeq: v.seq - 1,
		}
		first = true
	}
	seq = v.seq + m.seqOffset
	ts = v.timestamp + m.tsOffset
	if int16(v.seq-m.lastInSeq) > 0 {
		m.lastInSeq = v.seq
	}
	if int16(seq-tx.seq) >= 0 {
		tx.seq = seq + 1
	}
	if !tx.sent || int32(ts-tx.lastTS) > 0 {
		tx.lastTS = ts
		tx.clock = rtpClock{ts: ts, at: now}
	}
	tx.sent = true
	return seq, ts, first
}

// skipRelayed accounts for an in-order packet of the current source that is
// not relayed (a payload type the other leg cannot take, or a leg on hold):
// shifting the offset keeps the outgoing sequence free of a gap the receiver
// would count as loss.
func (tx *txState) skipRelayed(v rtpView) {
	m := &tx.relay
	if m.active && m.ssrc == v.ssrc && v.seq == m.lastInSeq+1 {
		m.seqOffset--
		m.lastInSeq = v.seq
	}
}
