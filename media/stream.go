package media

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Stream is one RTP stream paced by a Scheduler: hold music for one call leg.
//
// Packets follow RFC 3550 and the park server's contract: sequence number +1
// and timestamp +160 per packet, the marker bit on the first packet and on the
// first after each Resume only. The timestamp follows the wall clock, so it
// keeps running while the stream is paused: after a pause it jumps by the
// paused time (in 160-sample steps) while the sequence number does not.
//
// A Stream is safe for concurrent use.
type Stream struct {
	shard *shard

	// Schedule, written by the shard goroutine while the stream is out of
	// the heap and read by heap operations under shard.mu.
	start     time.Duration // deadline of slot 0, since the scheduler's epoch
	startTime time.Time     // the same instant on the wall clock
	slot      int64         // slot of the next deadline: next = start + slot×20 ms
	next      time.Duration
	phase     int // 1 ms slot of the period, for the shard's load balance
	index     int // position in the shard's heap, or indexDue / indexGone

	// stopped is set under mu (so that no packet follows Stop) and read
	// without it by the shard when it puts the stream back in its heap.
	stopped atomic.Bool

	mu     sync.Mutex
	w      PacketWriter
	dst    netip.AddrPort
	frames *Frames
	// once, when set, is played before frames, a single time (an
	// announcement); onceDone is closed when its last frame has gone.
	once     *Frames
	onceDone chan struct{}
	codec    Codec // what the leg expects; frames are transcoded if they differ
	pt       uint8 // payload type the leg numbered codec with
	frame    int   // next frame of the loop
	ssrc     uint32
	seq      uint16 // next sequence number
	ts0      uint32 // timestamp of slot 0
	marker   bool   // next packet carries the marker bit
	paused   bool
	lastTS   uint32
	sent     bool     // a packet was sent, so lastTS is meaningful
	protect  *srtpOut // the leg's SRTP encryption, nil for plain RTP

	// Counters, atomic so that a shard's batch can record its results
	// without taking the streams' locks (batch_linux.go).
	failing atomic.Bool // the last write failed (for logging transitions only)
	packets atomic.Uint64
	octets  atomic.Uint64
	errors  atomic.Uint64
	// inBatch is set while a packet of the stream waits in its shard's
	// batch, so that Stop waits for it to leave.
	inBatch atomic.Bool
}

// StreamStats counts what a stream has sent.
type StreamStats struct {
	Packets     uint64 // packets written without error
	Octets      uint64 // payload octets of those packets (as in an RTCP sender report)
	WriteErrors uint64 // writes that failed; the stream went on
}

// SSRC returns the stream's synchronisation source identifier.
func (st *Stream) SSRC() uint32 { return st.ssrc }

// Stats returns the stream's counters.
func (st *Stream) Stats() StreamStats {
	return StreamStats{Packets: st.packets.Load(), Octets: st.octets.Load(), WriteErrors: st.errors.Load()}
}

// Pause stops sending, for instance while the peer holds the call. The
// stream keeps its place in the schedule and its timestamp clock runs on.
func (st *Stream) Pause() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.paused = true
}

// Resume sends again after Pause; the next packet carries the marker bit.
// Resuming a stream that is not paused changes nothing.
func (st *Stream) Resume() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.paused {
		st.paused = false
		st.marker = true
	}
}

// SetDestination sends the following packets to dst: symmetric RTP sends
// where the peer's packets come from. A dst that is not sendable (zero, port
// 0 or 0.0.0.0) silences the stream until another SetDestination.
func (st *Stream) SetDestination(dst netip.AddrPort) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.dst = dst
}

// SetFrames switches the stream to other audio, and to its codec and static
// payload type; the loop position carries over. The SSRC, sequence and
// timestamp continue. It returns ErrInvalidArgument for nil or empty frames.
func (st *Stream) SetFrames(f *Frames) error {
	if f == nil || f.Len() == 0 {
		return fmt.Errorf("%w: SetFrames: frames are nil or empty", ErrInvalidArgument)
	}
	st.setAudio(f, f.Codec(), f.Codec().PayloadType())
	return nil
}

// setAudio sets the frames and what the leg expects; frames of another codec
// are transcoded packet by packet (a table lookup per byte, no allocation).
func (st *Stream) setAudio(f *Frames, codec Codec, pt uint8) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.frames = f
	st.codec = codec
	st.pt = pt
	if st.once == nil { // else frame counts the announcement's
		st.frame %= f.Len()
	}
}

// announce plays a once, from its first frame, then the stream's frames in
// their loop; done is closed when a's last frame has gone (or the stream
// stopped: Stop closes it). An announcement under way is cut short.
func (st *Stream) announce(a *Frames, done chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.onceDone != nil && st.once != nil {
		close(st.onceDone)
	}
	st.once, st.onceDone, st.frame = a, done, 0
}

// setProtect switches the stream's SRTP encryption (nil: plain).
func (st *Stream) setProtect(p *srtpOut) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.protect = p
}

// setFormat changes what the leg expects and keeps the frames.
func (st *Stream) setFormat(codec Codec, pt uint8) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.codec = codec
	st.pt = pt
}

// Stop ends the stream. It is idempotent; once it returns the stream sends
// nothing more (a packet being written when Stop is called completes first).
func (st *Stream) Stop() {
	st.mu.Lock()
	already := st.stopped.Swap(true)
	if st.once != nil {
		st.once = nil
		close(st.onceDone)
	}
	st.mu.Unlock()
	if st.inBatch.Load() {
		// Its last packet is in the shard's batch: the shard holds
		// flushMu until the batch has left.
		st.shard.flushMu.Lock()
		//lint:ignore SA2001 an empty critical section: waits for the flush
		st.shard.flushMu.Unlock()
	}
	if !already {
		st.shard.remove(st)
	}
}

// handoff returns the stream's identity for whatever sends next on the same
// leg. The stream must be stopped.
func (st *Stream) handoff() txState {
	st.mu.Lock()
	defer st.mu.Unlock()
	return txState{
		ssrc:   st.ssrc,
		seq:    st.seq,
		clock:  rtpClock{ts: st.ts0, at: st.startTime},
		lastTS: st.lastTS,
		sent:   st.sent,
	}
}

// tick handles the stream's due deadline on its shard's goroutine: it sends
// the packet of that slot (unless paused or without destination) and moves
// the deadline one slot on. A stream more than maxCatchUp behind skips the
// missed slots; a smaller delay is caught up by the shard calling tick again
// at once, since the next deadline is already past.
func (st *Stream) tick(sh *shard) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopped.Load() {
		return
	}
	late := sh.sched.now() - st.next
	if late > sh.sched.catchUp {
		missed := int64(late / FrameDuration)
		st.slot += missed
		st.next += time.Duration(missed) * FrameDuration
		late -= time.Duration(missed) * FrameDuration
		if !st.paused {
			sh.skipped.Add(uint64(missed))
		}
	}
	if !st.paused && sendable(st.dst) {
		st.send(sh, late)
	}
	st.slot++
	st.next += FrameDuration
}

// send writes the packet of the current slot through the shard's buffer: a
// pion header marshalled in place and the shared frame copied after it, so
// nothing is allocated per packet. A stream on a SharedPort whose sends the
// platform batches (batch_linux.go) builds its packet in the shard's batch
// instead, which leaves with the shard's other due packets in one system
// call at the end of the round.
func (st *Stream) send(sh *shard, late time.Duration) {
	buf := sh.batchBuffer(st.w)
	batched := buf != nil
	if !batched {
		buf = sh.buf[:]
	}
	ts := st.ts0 + uint32(st.slot)*SamplesPerFrame
	hdr := rtp.Header{
		Version:        rtpVersion,
		Marker:         st.marker,
		PayloadType:    st.pt,
		SequenceNumber: st.seq,
		Timestamp:      ts,
		SSRC:           st.ssrc,
	}
	n, err := hdr.MarshalTo(buf)
	if err != nil {
		// Unreachable with a fixed header and this buffer; counted rather
		// than ignored should pion's encoding ever change.
		st.errors.Add(1)
		sh.writeErrors.Add(1)
		return
	}
	payload := buf[n:]
	playing := st.frames
	if st.once != nil {
		playing = st.once
	}
	m := copy(payload, playing.Payload(st.frame))
	if fc := playing.Codec(); fc != st.codec {
		Transcode(payload[:m], fc, st.codec)
	}
	sh.recordLateness(late)
	// The packet counts as sent even if the write fails: the receiver sees
	// a lost packet, and the sequence stays in step with the clock.
	st.seq++
	if st.once != nil {
		if st.frame++; st.frame == st.once.Len() {
			st.once, st.frame = nil, 0
			close(st.onceDone)
		}
	} else {
		st.frame = (st.frame + 1) % st.frames.Len()
	}
	st.lastTS = ts
	st.sent = true
	size := n + m
	if st.protect != nil {
		// In place, in the buffer the packet leaves from: the shared
		// frame was copied into it above, so the music stays encoded
		// once and each stream encrypts its own copy.
		out, err := st.protect.protect(buf[:size])
		if err != nil {
			st.result(sh, err, m)
			return
		}
		size = len(out)
	}
	if batched {
		if err := sh.batchPush(st, size, m, st.dst); err != nil {
			st.result(sh, err, m)
			return
		}
		st.marker = false // a failed batched write loses the marker with the packet
		return
	}
	_, err = st.w.WriteToUDPAddrPort(buf[:size], st.dst)
	if err == nil {
		st.marker = false
	}
	st.result(sh, err, m)
}

// result counts one packet's write, of octets payload octets.
func (st *Stream) result(sh *shard, err error, octets int) {
	if err != nil {
		st.errors.Add(1)
		sh.writeErrors.Add(1)
		if !st.failing.Swap(true) {
			sh.sched.logger.Debug("rtp stream write failing", "ssrc", st.ssrc, "err", err)
		}
		return
	}
	if st.failing.Swap(false) {
		sh.sched.logger.Debug("rtp stream write recovered", "ssrc", st.ssrc)
	}
	st.packets.Add(1)
	st.octets.Add(uint64(octets))
	sh.packets.Add(1)
}
