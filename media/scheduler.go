package media

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// PacketWriter is where a stream's packets go. *net.UDPConn satisfies it, so a
// stream sends from its call leg's own RTP port (the port the peer sends to,
// which symmetric RTP and NATs rely on).
type PacketWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

// SchedulerOptions configures a Scheduler. The zero value means the defaults.
type SchedulerOptions struct {
	// Shards is the number of goroutines pacing streams, each owning a share
	// of them. Zero or less means runtime.GOMAXPROCS(0): one per core keeps
	// every core sending without goroutines competing for the same streams.
	Shards int
	// Logger receives a Debug record when a stream's writes start or stop
	// failing. Nil keeps the scheduler silent.
	Logger *slog.Logger
	// SendAhead is how early before its deadline a packet may leave. Go's
	// timers can fire up to a millisecond late (the netpoller sleeps in whole
	// milliseconds) and a shard's batch of due packets takes a while to
	// write, so waking on the deadline itself makes most packets late. A
	// packet a little early is harmless: every packet of a stream is early by
	// about the same, so the receiver still sees 20 ms between them. Zero
	// means 1 ms; a negative value means none (send on the deadline exactly,
	// as tests on a fake clock want).
	SendAhead time.Duration
	// Hold, when set, is asked before each round of sending: while it
	// reports true nothing is sent, and the streams fall behind (skipping,
	// once it reports false, what is more than maxCatchUp late). A park
	// server holds its music while it may no longer own its calls
	// (park.Lot.Stalled).
	Hold func() bool
}

// defaultSendAhead: see SchedulerOptions.SendAhead.
const defaultSendAhead = time.Millisecond

const (
	// maxCatchUp is how far behind schedule a stream may fall and still send
	// every missed packet: up to five back to back, which a jitter buffer
	// absorbs. Further behind (a stalled machine), the missed packets are
	// skipped: a burst of seconds of audio would only overflow the buffer.
	maxCatchUp = 100 * time.Millisecond
	// phaseSlots divides the 20 ms period into 1 ms slots; a new stream takes
	// the least busy one so that thousands of streams do not fall due in the
	// same millisecond. 1 ms is also the granularity of the runtime's timers.
	phaseSlots = int(FrameDuration / time.Millisecond)
)

// Scheduler paces many RTP streams at 20 ms with a few goroutines (shards)
// instead of a goroutine and a ticker per stream: each shard keeps its
// streams in a heap ordered by deadline, sleeps on one timer until the
// earliest, and sends every packet then due. Deadlines are absolute (start +
// k×20 ms), so a late wake-up does not shift the stream: the missed packets go
// out at once and the next ones keep their time.
//
// A Scheduler is safe for concurrent use. Its goroutines run from NewScheduler
// until Close.
type Scheduler struct {
	epoch     time.Time
	now       func() time.Duration // time since epoch; replaced in benchmarks
	sendAhead time.Duration
	hold      func() bool // SchedulerOptions.Hold
	logger    *slog.Logger
	shards    []*shard
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu        sync.Mutex // orders Play against Close
	closed    bool
	closeOnce sync.Once

	// rx reads the endpoints' sockets where the platform allows it without
	// Go's netpoller (rawsock_linux.go); portableIO forces the netpoller
	// path everywhere, so tests and benchmarks can run both.
	rx         rxSet
	portableIO bool
	// catchUp is maxCatchUp; the endpoint tests, which check every frame
	// of an announcement on a loaded machine, raise it so nothing is
	// skipped there.
	catchUp time.Duration
}

// NewScheduler returns a running scheduler. Call Close to stop its streams and
// goroutines.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	s := newScheduler(opts)
	s.start()
	return s
}

// newScheduler builds a scheduler without starting its goroutines, so that
// benchmarks can drive a shard's send path directly.
func newScheduler(opts SchedulerOptions) *Scheduler {
	n := opts.Shards
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{epoch: time.Now(), logger: logger, sendAhead: max(opts.SendAhead, 0), hold: opts.Hold, catchUp: maxCatchUp}
	if opts.SendAhead == 0 {
		s.sendAhead = defaultSendAhead
	}
	s.now = func() time.Duration { return time.Since(s.epoch) }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.shards = make([]*shard, n)
	for i := range s.shards {
		s.shards[i] = &shard{
			sched:  s,
			wake:   make(chan struct{}, 1),
			wakeAt: maxDuration,
			due:    make([]*Stream, 0, 256),
		}
	}
	return s
}

func (s *Scheduler) start() {
	for _, sh := range s.shards {
		s.wg.Go(func() { sh.run(s.ctx) })
	}
}

// Play starts a stream that sends frames to dst from w, one packet every 20
// ms, looping the frames, with a random SSRC, first sequence number and first
// timestamp. The payload type is the frames' codec's. The first packet, which
// carries the marker bit, leaves within 20 ms: streams are spread over the
// period so that they do not all fall due in the same millisecond.
//
// A dst that is not sendable (zero, port 0 or 0.0.0.0) keeps the stream
// silent until SetDestination gives it one. After Close, Play returns
// ErrClosed.
func (s *Scheduler) Play(w PacketWriter, dst netip.AddrPort, frames *Frames) (*Stream, error) {
	if frames == nil || frames.Len() == 0 {
		return nil, fmt.Errorf("%w: Play: frames are nil or empty", ErrInvalidArgument)
	}
	c := frames.Codec()
	return s.play(w, dst, frames, c, c.PayloadType(), newTxState(time.Now()), false, nil)
}

// play starts a stream with the given identity (SSRC, next sequence number,
// timestamp clock) so that an endpoint's stream continues where its previous
// stream or relay left off. The stream sends under payload type pt and
// transcodes frames to codec if they differ, encrypted by protect unless it
// is nil.
func (s *Scheduler) play(w PacketWriter, dst netip.AddrPort, frames *Frames, codec Codec, pt uint8, tx txState, paused bool, protect *srtpOut) (*Stream, error) {
	if w == nil {
		return nil, fmt.Errorf("%w: Play: PacketWriter is nil", ErrInvalidArgument)
	}
	if frames == nil || frames.Len() == 0 {
		return nil, fmt.Errorf("%w: Play: frames are nil or empty", ErrInvalidArgument)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	sh := s.shards[0]
	for _, other := range s.shards[1:] {
		if other.streams.Load() < sh.streams.Load() {
			sh = other
		}
	}
	st := &Stream{
		shard:   sh,
		w:       w,
		dst:     dst,
		frames:  frames,
		codec:   codec,
		pt:      pt,
		ssrc:    tx.ssrc,
		seq:     tx.seq,
		marker:  true,
		paused:  paused,
		lastTS:  tx.lastTS,
		sent:    tx.sent,
		protect: protect,
	}
	sh.add(st, tx)
	return st, nil
}

// Close stops every stream and the scheduler's goroutines and returns once
// they have exited; no packet is sent after it returns. It is idempotent and
// always returns nil.
func (s *Scheduler) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		for _, sh := range s.shards {
			sh.stopAll()
		}
		s.rx.close()
	})
	return nil
}

// SchedulerStats counts what a scheduler has sent since it started.
type SchedulerStats struct {
	// Streams is the number of streams playing now, paused ones included.
	Streams int
	// Packets is the number of packets written without error.
	Packets uint64
	// WriteErrors is the number of writes that failed (for instance
	// ECONNREFUSED after an ICMP port unreachable); the stream goes on.
	WriteErrors uint64
	// Skipped is the number of packets never sent because their stream fell
	// more than 100 ms behind schedule.
	Skipped uint64
	// Lateness is how long after its deadline each packet was written (both
	// successful and failed writes), a measure of pacing quality.
	Lateness Lateness
}

// Lateness is a histogram of how late packets were written relative to their
// absolute deadline (stream start + k×20 ms). Each packet counts in exactly
// one bucket.
type Lateness struct {
	Within1ms  uint64 // at most 1 ms late
	Within2ms  uint64 // more than 1 ms, at most 2 ms
	Within5ms  uint64 // more than 2 ms, at most 5 ms
	Within20ms uint64 // more than 5 ms, at most 20 ms
	Later      uint64 // more than 20 ms late
}

// Total returns the number of packets in the histogram.
func (l Lateness) Total() uint64 {
	return l.Within1ms + l.Within2ms + l.Within5ms + l.Within20ms + l.Later
}

// Stats returns the counters summed over the scheduler's shards.
func (s *Scheduler) Stats() SchedulerStats {
	var st SchedulerStats
	for _, sh := range s.shards {
		st.Streams += int(sh.streams.Load())
		st.Packets += sh.packets.Load()
		st.WriteErrors += sh.writeErrors.Load()
		st.Skipped += sh.skipped.Load()
		st.Lateness.Within1ms += sh.lateness[0].Load()
		st.Lateness.Within2ms += sh.lateness[1].Load()
		st.Lateness.Within5ms += sh.lateness[2].Load()
		st.Lateness.Within20ms += sh.lateness[3].Load()
		st.Lateness.Later += sh.lateness[4].Load()
	}
	return st
}

// packetBufferSize holds the largest packet a stream builds: an RTP header
// and a frame of 8-bit G.711, with room to spare, and SRTP's tag after it.
const packetBufferSize = rtpHeaderSize + 2*SamplesPerFrame + srtpTrailerMax

// maxDuration stands for "no deadline".
const maxDuration = time.Duration(1<<63 - 1)

// Heap positions that are not an index.
const (
	indexDue  = -1 // taken out of the heap to be sent; the shard puts it back
	indexGone = -2 // stopped and forgotten
)

// shard is one pacing goroutine and the streams it owns.
type shard struct {
	sched *Scheduler
	wake  chan struct{} // a new stream is due before the timer fires

	mu       sync.Mutex
	heap     streamHeap
	wakeAt   time.Duration // when the shard's timer fires; maxDuration if idle
	slotLoad [phaseSlots]int

	// Owned by the goroutine running sendDue.
	due   []*Stream
	buf   [packetBufferSize]byte
	batch *sendBatch // packets for shared ports, built on first use

	// flushMu is held by the shard's goroutine from the first packet of a
	// round to the batch's flush, so that Stream.Stop can wait until a
	// packet of its stream in the batch has left.
	flushMu sync.Mutex

	streams     atomic.Int64
	packets     atomic.Uint64
	writeErrors atomic.Uint64
	skipped     atomic.Uint64
	lateness    [5]atomic.Uint64
}

// add schedules st, which must not be visible to anyone else yet, on the
// least busy 1 ms phase of the period, starting within 20 ms.
func (sh *shard) add(st *Stream, tx txState) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := sh.sched.now()
	period := now - now%FrameDuration
	cur := int((now % FrameDuration) / time.Millisecond)
	phase := -1
	// Scan from the next slot round to the current one, so that among equally
	// busy slots the earliest start wins.
	for i := 1; i <= phaseSlots; i++ {
		p := (cur + i) % phaseSlots
		if phase < 0 || sh.slotLoad[p] < sh.slotLoad[phase] {
			phase = p
		}
	}
	start := period + time.Duration(phase)*time.Millisecond
	if start < now {
		start += FrameDuration
	}
	st.phase = phase
	st.start = start
	st.next = start
	st.startTime = sh.sched.epoch.Add(start)
	st.ts0 = tx.timestampAt(st.startTime)
	sh.slotLoad[phase]++
	sh.streams.Add(1)
	sh.heap.push(st)
	if start < sh.wakeAt {
		select {
		case sh.wake <- struct{}{}:
		default:
		}
	}
}

// remove takes a stopped stream out of the scheduler.
func (sh *shard) remove(st *Stream) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch {
	case st.index >= 0:
		sh.heap.remove(st.index)
		sh.forget(st)
	case st.index == indexDue:
		// Being sent right now: counted out at once, so Stats agrees with
		// Stop; the shard drops it instead of putting it back.
		sh.forget(st)
	}
}

func (sh *shard) forget(st *Stream) {
	st.index = indexGone
	sh.slotLoad[st.phase]--
	sh.streams.Add(-1)
}

// stopAll stops every stream; the shard's goroutine has exited.
func (sh *shard) stopAll() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, st := range sh.heap {
		st.stopped.Store(true)
		sh.forget(st)
	}
	clear(sh.heap)
	sh.heap = sh.heap[:0]
}

// run paces the shard's streams until ctx is done.
func (sh *shard) run(ctx context.Context) {
	timer := time.NewTimer(maxDuration)
	defer timer.Stop()
	for {
		next, ok := sh.sendDue(ctx)
		var fired <-chan time.Time
		if ok {
			// A deadline already past makes the timer fire at once.
			timer.Reset(next - sh.sched.sendAhead - sh.sched.now())
			fired = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-fired:
		case <-sh.wake:
		}
	}
}

// sendDue sends every packet whose deadline has come, including catch-up
// packets of streams that fell behind, and returns the earliest deadline
// left (false if the shard has no streams, or ctx is done). An overloaded
// shard may never run out of due packets, so ctx is checked between rounds:
// Close must not wait for the load to drop.
func (sh *shard) sendDue(ctx context.Context) (time.Duration, bool) {
	for ctx.Err() == nil {
		if hold := sh.sched.hold; hold != nil && hold() {
			return sh.sched.now() + FrameDuration, true
		}
		sh.mu.Lock()
		now := sh.sched.now()
		due := sh.due[:0]
		for len(sh.heap) > 0 && sh.heap[0].next <= now+sh.sched.sendAhead {
			st := sh.heap.pop()
			st.index = indexDue
			due = append(due, st)
		}
		if len(due) == 0 {
			next, ok := maxDuration, false
			if len(sh.heap) > 0 {
				next, ok = sh.heap[0].next, true
			}
			sh.wakeAt = next
			sh.mu.Unlock()
			return next, ok
		}
		sh.mu.Unlock()

		sh.flushMu.Lock()
		for _, st := range due {
			st.tick(sh)
		}
		sh.flushBatch()
		sh.flushMu.Unlock()

		sh.mu.Lock()
		for i, st := range due {
			switch {
			case st.index == indexGone: // forgotten by Stop meanwhile
			case st.stopped.Load():
				sh.forget(st)
			default:
				sh.heap.push(st)
			}
			due[i] = nil
		}
		sh.due = due[:0]
		sh.mu.Unlock()
	}
	return maxDuration, false
}

// recordLateness counts one packet written late after its deadline.
func (sh *shard) recordLateness(late time.Duration) {
	sh.lateness[latenessBucket(late)].Add(1)
}

// latenessBucket returns the index in Lateness order (Within1ms first) of
// the bucket counting a packet written late after its deadline.
func latenessBucket(late time.Duration) int {
	switch {
	case late <= time.Millisecond:
		return 0
	case late <= 2*time.Millisecond:
		return 1
	case late <= 5*time.Millisecond:
		return 2
	case late <= 20*time.Millisecond:
		return 3
	}
	return 4
}

// streamHeap is a binary min-heap of streams by next deadline, keeping each
// stream's position in Stream.index so that Stop can remove it directly.
type streamHeap []*Stream

func (h *streamHeap) push(st *Stream) {
	st.index = len(*h)
	*h = append(*h, st)
	h.up(st.index)
}

func (h *streamHeap) pop() *Stream {
	old := *h
	n := len(old) - 1
	st := old[0]
	h.swap(0, n)
	old[n] = nil
	*h = old[:n]
	if n > 0 {
		h.down(0)
	}
	return st
}

func (h *streamHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	if i != n {
		h.swap(i, n)
	}
	old[n] = nil
	*h = old[:n]
	if i != n && !h.down(i) {
		h.up(i)
	}
}

func (h streamHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h streamHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].next <= h[i].next {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

// down sifts i towards the leaves and reports whether it moved.
func (h streamHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		least := i
		if l := 2*i + 1; l < n && h[l].next < h[least].next {
			least = l
		}
		if r := 2*i + 2; r < n && h[r].next < h[least].next {
			least = r
		}
		if least == i {
			return i != start
		}
		h.swap(i, least)
		i = least
	}
}
