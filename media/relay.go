package media

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Relay bridges two call legs: every RTP packet read on one endpoint goes
// out of the other to its peer, on the reading endpoint's goroutine, as soon
// as it arrives (no pacing, no buffering: the sender's own timing is the
// right one). Each packet is rewritten in place in the read buffer, so
// relaying allocates nothing:
//   - the header becomes the outgoing leg's own (its SSRC, its sequence and
//     timestamp continued by constant offsets, marker on the first relayed
//     packet and after a hold), dropping CSRCs, extensions and padding;
//   - G.711 audio is transcoded PCMU<->PCMA when the legs' codecs differ;
//   - telephone-event (RFC 4733) keeps its payload and marker and takes the
//     other leg's telephone-event payload type, or is dropped if that leg
//     negotiated none.
//
// Packets of other payload types, and packets towards a leg on hold, are
// dropped and counted.
type Relay struct {
	a, b      *Endpoint
	state     atomic.Int32 // relayPending, relayActive or relayClosed
	closeOnce sync.Once
	aToB      relayCounters
	bToA      relayCounters
}

// Relay states. A relay is pending while Bridge stops the music, so that no
// relayed packet interleaves with the last music packets.
const (
	relayPending int32 = iota
	relayActive
	relayClosed
)

type relayCounters struct {
	packets     atomic.Uint64
	octets      atomic.Uint64
	transcoded  atomic.Uint64
	events      atomic.Uint64
	dropped     atomic.Uint64
	writeErrors atomic.Uint64
}

func (c *relayCounters) stats() RelayDirectionStats {
	return RelayDirectionStats{
		Packets:     c.packets.Load(),
		Octets:      c.octets.Load(),
		Transcoded:  c.transcoded.Load(),
		Events:      c.events.Load(),
		Dropped:     c.dropped.Load(),
		WriteErrors: c.writeErrors.Load(),
	}
}

// RelayStats counts a relay's traffic in each direction.
type RelayStats struct {
	AToB RelayDirectionStats // read on the first endpoint given to Bridge, sent out of the second
	BToA RelayDirectionStats // the other way
}

// RelayDirectionStats counts one direction of a relay.
type RelayDirectionStats struct {
	Packets     uint64 // packets relayed (written without error)
	Octets      uint64 // payload octets of those packets
	Transcoded  uint64 // audio packets converted between PCMU and PCMA
	Events      uint64 // telephone-event packets relayed
	Dropped     uint64 // packets not relayed: payload type not negotiated, no telephone-event on the other leg, other leg on hold or without address
	WriteErrors uint64 // writes that failed
}

// Bridge stops the music on both endpoints and relays between them until
// the relay or either endpoint is closed. What each leg sends continues its
// stream: same SSRC, next sequence number, timestamps following on from the
// music's.
//
// Errors: ErrInvalidArgument (nil, or the same endpoint twice), ErrBridged
// (either is already bridged), ErrClosed.
func Bridge(a, b *Endpoint) (*Relay, error) {
	if a == nil || b == nil {
		return nil, fmt.Errorf("%w: Bridge: nil endpoint", ErrInvalidArgument)
	}
	if a == b {
		return nil, fmt.Errorf("%w: Bridge: endpoint %v bridged to itself", ErrInvalidArgument, a.local)
	}
	r := &Relay{a: a, b: b}
	// Claiming each leg with a compare-and-swap, rather than locking both,
	// needs no lock order between two endpoints.
	if !a.relay.CompareAndSwap(nil, r) {
		return nil, fmt.Errorf("%w: %v", ErrBridged, a.local)
	}
	if !b.relay.CompareAndSwap(nil, r) {
		a.relay.CompareAndSwap(r, nil)
		return nil, fmt.Errorf("%w: %v", ErrBridged, b.local)
	}
	// release undoes the claims. Relay.Close alone is not enough: a's Close
	// may have closed r before b was claimed, and then nothing else would
	// free b.
	release := func() {
		_ = r.Close() // Relay.Close always returns nil.
		a.relay.CompareAndSwap(r, nil)
		b.relay.CompareAndSwap(r, nil)
	}
	for _, e := range [2]*Endpoint{a, b} {
		e.mu.Lock()
		closed := e.closed
		if !closed {
			e.stopMusicLocked()
			e.tx.relay.active = false // the first relayed packet sets the offsets
		}
		e.mu.Unlock()
		if closed {
			release()
			return nil, fmt.Errorf("%w: Bridge: endpoint %v", ErrClosed, e.local)
		}
	}
	if !r.state.CompareAndSwap(relayPending, relayActive) {
		// An endpoint's Close ran between the checks above and here.
		release()
		return nil, fmt.Errorf("%w: Bridge: an endpoint closed while bridging", ErrClosed)
	}
	return r, nil
}

// Close stops relaying and returns once no packet is being relayed; the
// endpoints stay open (PlayMusic may start again on either). It is
// idempotent and returns nil.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.state.Store(relayClosed)
		for _, e := range [2]*Endpoint{r.a, r.b} {
			e.relay.CompareAndSwap(r, nil)
			// The read goroutine holds relayMu while it forwards; taking it
			// once waits for a packet in flight.
			e.relayMu.Lock()
			e.relayMu.Unlock()
		}
	})
	return nil
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	return RelayStats{AToB: r.aToB.stats(), BToA: r.bToA.stats()}
}

// direction returns the counters and the outgoing leg for packets read on
// from.
func (r *Relay) direction(from *Endpoint) (*relayCounters, *Endpoint) {
	if from == r.a {
		return &r.aToB, r.b
	}
	return &r.bToA, r.a
}

// drop counts a packet read on from that is not relayed, keeping the
// outgoing sequence gapless.
func (r *Relay) drop(from *Endpoint, v rtpView) {
	c, to := r.direction(from)
	c.dropped.Add(1)
	to.mu.Lock()
	to.tx.skipRelayed(v)
	to.mu.Unlock()
}

// forward sends pkt, read on from, out of the other leg. It runs on from's
// read goroutine with from.relayMu held.
func (r *Relay) forward(from *Endpoint, pkt []byte, v rtpView, event bool, fromCodec Codec) {
	c, to := r.direction(from)
	to.mu.Lock()
	if to.closed || to.held || !sendable(to.remote) || (event && to.tePT == 0) {
		to.tx.skipRelayed(v)
		to.mu.Unlock()
		c.dropped.Add(1)
		return
	}
	pt, toCodec := to.pt, to.codec
	if event {
		pt, toCodec = to.tePT, fromCodec // events are not audio: never transcoded
	}
	seq, ts, first := to.tx.mapRelayed(v, time.Now())
	hdr := rtp.Header{
		Version: rtpVersion,
		// RFC 4733 marks the first packet of each event; audio is marked
		// only where the leg's stream restarts, as for music.
		Marker:         first || to.tx.marker || (event && v.marker),
		PayloadType:    pt,
		SequenceNumber: seq,
		Timestamp:      ts,
		SSRC:           to.tx.ssrc,
	}
	to.tx.marker = false
	dst := to.remote
	protect := to.srtpOut
	to.mu.Unlock()

	out := rewriteRelayed(pkt, v, &hdr, fromCodec, toCodec)
	if protect != nil {
		// In the read buffer, whose spare capacity takes the tag: a
		// packet decrypted on from left its own tag's room free, and the
		// buffer is readBufferSize long anyway.
		var err error
		if out, err = protect.protect(out); err != nil {
			c.writeErrors.Add(1)
			to.writeErrors.Add(1)
			return
		}
	}
	if _, err := to.out.WriteToUDPAddrPort(out, dst); err != nil {
		c.writeErrors.Add(1)
		to.writeErrors.Add(1)
		return
	}
	to.sent.Add(1)
	c.packets.Add(1)
	c.octets.Add(uint64(v.payloadEnd - v.payloadStart))
	switch {
	case event:
		c.events.Add(1)
	case fromCodec != toCodec:
		c.transcoded.Add(1)
	}
}

// rewriteRelayed turns the parsed packet pkt into the outgoing one in place
// and returns it: hdr is written just before the payload (over the incoming
// header's tail, so CSRCs and extensions disappear without copying the
// payload), padding is cut off, and the payload is transcoded from one codec
// to the other if they differ.
func rewriteRelayed(pkt []byte, v rtpView, hdr *rtp.Header, from, to Codec) []byte {
	start := v.payloadStart - rtpHeaderSize
	// A header without CSRCs or extension is exactly rtpHeaderSize bytes,
	// and parseRTP guarantees that many before the payload: MarshalTo
	// cannot fail.
	_, _ = hdr.MarshalTo(pkt[start:v.payloadStart])
	Transcode(pkt[v.payloadStart:v.payloadEnd], from, to)
	return pkt[start:v.payloadEnd]
}
