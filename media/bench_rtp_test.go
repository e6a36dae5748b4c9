package media

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// benchSocket opens a loopback UDP socket for a benchmark.
func benchSocket(b *testing.B) *net.UDPConn {
	b.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkWriteToUDPBaseline is the floor under every per-packet figure: a
// bare loop writing a prebuilt 172-byte packet (12-byte header, 160 bytes of
// G.711) from one socket to a loopback sink. The sink is not drained, as in
// BenchmarkSchedulerPerPacket: the kernel's cost of a full receive queue is
// the same for both.
func BenchmarkWriteToUDPBaseline(b *testing.B) {
	conn, sink := benchSocket(b), benchSocket(b)
	dst := addrOfConn(sink)
	pkt := make([]byte, rtpHeaderSize+SamplesPerFrame)
	pkt[0] = 0x80
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkSchedulerPerPacket measures the scheduler's send path per packet,
// against the bare write of BenchmarkWriteToUDPBaseline, in the same way:
// one socket, one loopback sink.
//
// The fair comparison is the work done per packet, not the pacing: a paced
// run spends most of its wall time asleep by design. So the shard is driven
// directly with a fake clock that jumps a whole period at a time: every call
// finds every stream due and runs exactly what the shard goroutine runs per
// packet (heap pop and push, per-stream lock, pion header marshalled into the
// shard buffer, frame copy, write, counters). What this leaves out is the
// timer wake-up, which a shard pays once per 1 ms slot for all the streams due
// in it (thousands of streams: a few dozen packets per wake-up);
// BenchmarkPacedStreams measures that, in CPU time per packet.
//
// It also runs the bare write loop for the same number of packets and reports
// the ratio as x-baseline.
func BenchmarkSchedulerPerPacket(b *testing.B) {
	conn, sink := benchSocket(b), benchSocket(b)
	benchSchedulerPerPacket(b, conn, addrOfConn(sink))
}

// benchSchedulerPerPacket is BenchmarkSchedulerPerPacket writing through w.
func benchSchedulerPerPacket(b *testing.B, conn PacketWriter, dst netip.AddrPort) {
	s := newScheduler(SchedulerOptions{Shards: 1})
	defer s.Close()
	var fake time.Duration
	s.now = func() time.Duration { return fake }
	sh := s.shards[0]

	// 1,000 streams: the heap depth of a shard with 2,000 calls on 2 cores.
	streams := min(1000, b.N)
	frames := testFrames(PCMU, 50)
	for range streams {
		if _, err := s.Play(conn, dst, frames); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for sh.packets.Load()+sh.writeErrors.Load() < uint64(b.N) {
		fake += FrameDuration
		sh.sendDue(context.Background())
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sent := sh.packets.Load() + sh.writeErrors.Load()
	if errs := sh.writeErrors.Load(); errs > 0 {
		b.Fatalf("%d write errors", errs)
	}
	perPacket := float64(elapsed.Nanoseconds()) / float64(sent)

	pkt := make([]byte, rtpHeaderSize+SamplesPerFrame)
	start = time.Now()
	for range sent {
		if _, err := conn.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
	}
	baseline := float64(time.Since(start).Nanoseconds()) / float64(sent)
	b.ReportMetric(perPacket, "ns/packet")
	b.ReportMetric(baseline, "baseline-ns/packet")
	b.ReportMetric(perPacket/baseline, "x-baseline")
}

func addrOfConn(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// jitterSocket is a stream's sending socket that records each interval
// between its writes as |interval − 20 ms| in 100 µs buckets (the last one
// collects everything beyond 20 ms): the inter-arrival measure,
// taken at the sender. Only one goroutine writes to a given socket.
type jitterSocket struct {
	conn   *net.UDPConn
	last   time.Time
	jitter [jitterBuckets]uint32
}

const (
	jitterBucket  = 100 * time.Microsecond
	jitterBuckets = 201
)

func (j *jitterSocket) WriteToUDPAddrPort(p []byte, dst netip.AddrPort) (int, error) {
	now := time.Now()
	if !j.last.IsZero() {
		d := now.Sub(j.last) - FrameDuration
		if d < 0 {
			d = -d
		}
		j.jitter[min(int(d/jitterBucket), jitterBuckets-1)]++
	}
	j.last = now
	return j.conn.WriteToUDPAddrPort(p, dst)
}

// BenchmarkPacedStreams runs 5,000 paced streams (250,000 packets/s), and
// 2,000 (the target, 100,000 packets/s), for 2 s of wall time per
// iteration, each from its own socket (one RTP port per call leg, as in
// production), to four loopback sinks drained by four goroutines, once with
// the Scheduler and once with the naive design it replaces: a goroutine and
// a timer per stream (with the same absolute deadlines and catch-up rules,
// so that only the architecture differs).
//
// Reported: late<=2ms-% (share of packets written at most 2 ms after their
// deadline), p99-late-ms (upper bound of the lateness bucket holding the
// 99th percentile: 1, 2, 5, 20, or 100 for "later"), p99-jitter-ms (99th
// percentile of |inter-send interval − 20 ms|, 0.1 ms resolution),
// received-% (packets the sinks read), packets/s, cpu-ns/packet (process
// user+system CPU, sinks included, per packet) and allocs/packet.
//
// The sinks share the same two cores and cost about as much per packet as
// the sender, which no real deployment pays (the phones are elsewhere), so
// the scheduler also runs against sinks nobody reads ("unread-sink": the
// kernel queues, then drops): that is the sender's own pacing.
func BenchmarkPacedStreams(b *testing.B) {
	for _, streams := range []int{5000, 2000} {
		benchPacedDesigns(b, streams)
	}
}

// benchPacedDesigns runs both designs with the given number of streams.
func benchPacedDesigns(b *testing.B, streams int) {
	playAll := func(socks []*jitterSocket, sinks []netip.AddrPort, frames *Frames) (func() Lateness, func()) {
		s := NewScheduler(SchedulerOptions{})
		for i, sock := range socks {
			if _, err := s.Play(sock, sinks[i%len(sinks)], frames); err != nil {
				b.Fatal(err)
			}
		}
		return func() Lateness { return s.Stats().Lateness }, func() { _ = s.Close() }
	}
	b.Run(fmt.Sprintf("scheduler-unread-sink/%d", streams), func(b *testing.B) {
		benchPaced(b, streams, false, playAll)
	})
	b.Run(fmt.Sprintf("scheduler/%d", streams), func(b *testing.B) {
		benchPaced(b, streams, true, playAll)
	})
	b.Run(fmt.Sprintf("goroutine-per-stream/%d", streams), func(b *testing.B) {
		benchPaced(b, streams, true, func(socks []*jitterSocket, sinks []netip.AddrPort, frames *Frames) (func() Lateness, func()) {
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			counts := make([][5]atomic.Uint64, len(socks))
			for i, sock := range socks {
				wg.Go(func() {
					goroutinePerStream(ctx, sock, sinks[i%len(sinks)], frames, time.Duration(i%phaseSlots)*time.Millisecond, &counts[i])
				})
			}
			lateness := func() Lateness {
				var l Lateness
				for i := range counts {
					l.Within1ms += counts[i][0].Load()
					l.Within2ms += counts[i][1].Load()
					l.Within5ms += counts[i][2].Load()
					l.Within20ms += counts[i][3].Load()
					l.Later += counts[i][4].Load()
				}
				return l
			}
			return lateness, func() { cancel(); wg.Wait() }
		})
	})
}

// goroutinePerStream is the design the Scheduler replaces, given the same
// absolute deadlines, catch-up limit and packet building.
func goroutinePerStream(ctx context.Context, w PacketWriter, dst netip.AddrPort, frames *Frames, phase time.Duration, counts *[5]atomic.Uint64) {
	tx := newTxState(time.Now())
	var buf [rtpHeaderSize + SamplesPerFrame]byte
	deadline := time.Now().Add(phase)
	timer := time.NewTimer(phase)
	defer timer.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		late := time.Since(deadline)
		if late > maxCatchUp {
			missed := late / FrameDuration
			deadline = deadline.Add(missed * FrameDuration)
			late -= missed * FrameDuration
		}
		counts[latenessBucket(late)].Add(1)
		hdr := rtp.Header{Version: rtpVersion, Marker: k == 0, PayloadType: frames.Codec().PayloadType(),
			SequenceNumber: tx.seq, Timestamp: tx.clock.timestampAt(deadline), SSRC: tx.ssrc}
		n, _ := hdr.MarshalTo(buf[:])
		m := copy(buf[n:], frames.Payload(k))
		_, _ = w.WriteToUDPAddrPort(buf[:n+m], dst)
		tx.seq++
		deadline = deadline.Add(FrameDuration)
		timer.Reset(time.Until(deadline))
	}
}

// benchPaced opens the sockets and sinks, starts the streams with start
// (which returns the lateness so far and a stop function that returns once
// nothing writes any more), and measures a 2 s window after a short warm-up.
func benchPaced(b *testing.B, streams int, readSinks bool, start func([]*jitterSocket, []netip.AddrPort, *Frames) (func() Lateness, func())) {
	const (
		warmUp = 200 * time.Millisecond
		window = 2 * time.Second
	)
	sockets := streams
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(streams+100) {
		// Not enough descriptors for a socket per stream: share them.
		sockets = max(1, int(lim.Cur)-100)
		b.Logf("RLIMIT_NOFILE %d: %d streams share %d sockets", lim.Cur, streams, sockets)
	}
	conns := make([]*net.UDPConn, sockets)
	for i := range conns {
		conns[i] = benchSocket(b)
	}
	socks := make([]*jitterSocket, streams)
	for i := range socks {
		socks[i] = &jitterSocket{conn: conns[i%sockets]}
	}

	var received atomic.Uint64
	var drain sync.WaitGroup
	sinks := make([]netip.AddrPort, 4)
	sinkConns := make([]*net.UDPConn, len(sinks))
	for i := range sinks {
		sink := benchSocket(b)
		sinkConns[i] = sink
		_ = sink.SetReadBuffer(8 << 20)
		sinks[i] = addrOfConn(sink)
		if !readSinks {
			continue
		}
		drain.Go(func() {
			buf := make([]byte, 1500)
			for {
				if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
				received.Add(1)
			}
		})
	}
	frames := testFrames(PCMU, 50)

	b.ResetTimer()
	for range b.N {
		lateness, stop := start(socks, sinks, frames)
		time.Sleep(warmUp)

		var m0, m1 runtime.MemStats
		var r0, r1 syscall.Rusage
		runtime.ReadMemStats(&m0)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		l0, recv0 := lateness(), received.Load()
		t0 := time.Now()
		time.Sleep(window)
		l1, recv1 := lateness(), received.Load()
		elapsed := time.Since(t0)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		runtime.ReadMemStats(&m1)
		stop()

		l := Lateness{
			Within1ms:  l1.Within1ms - l0.Within1ms,
			Within2ms:  l1.Within2ms - l0.Within2ms,
			Within5ms:  l1.Within5ms - l0.Within5ms,
			Within20ms: l1.Within20ms - l0.Within20ms,
			Later:      l1.Later - l0.Later,
		}
		packets := float64(l.Total())
		if packets == 0 {
			b.Fatal("no packets sent")
		}
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		b.ReportMetric(100*float64(l.Within1ms+l.Within2ms)/packets, "late<=2ms-%")
		b.ReportMetric(p99Lateness(l), "p99-late-ms")
		if readSinks {
			b.ReportMetric(100*float64(recv1-recv0)/packets, "received-%")
		}
		b.ReportMetric(packets/elapsed.Seconds(), "packets/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/packets, "cpu-ns/packet")
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/packets, "allocs/packet")
	}
	b.StopTimer()
	var jitter [jitterBuckets]uint64
	var total uint64
	for _, s := range socks {
		for i, n := range s.jitter {
			jitter[i] += uint64(n)
			total += uint64(n)
		}
	}
	var cum uint64
	for i, n := range jitter {
		cum += n
		if cum*100 >= total*99 {
			b.ReportMetric(float64(i+1)*jitterBucket.Seconds()*1000, "p99-jitter-ms")
			break
		}
	}
	for _, c := range conns {
		_ = c.Close()
	}
	for _, c := range sinkConns {
		_ = c.Close() // ends the drain goroutines
	}
	drain.Wait()
}

// p99Lateness returns the upper bound, in ms, of the lateness bucket that
// holds the 99th percentile (100 standing for "more than 20 ms").
func p99Lateness(l Lateness) float64 {
	bounds := [5]float64{1, 2, 5, 20, 100}
	counts := [5]uint64{l.Within1ms, l.Within2ms, l.Within5ms, l.Within20ms, l.Later}
	var cum uint64
	for i, n := range counts {
		cum += n
		if cum*100 >= l.Total()*99 {
			return bounds[i]
		}
	}
	return bounds[4]
}

// BenchmarkRelayPerPacket measures relaying one 20 ms packet between two
// bridged legs, with and without PCMU->PCMA transcoding: parse, header
// rewrite in place, write to the other leg's peer. "inject" hands the packet
// to the leg's handler directly (the read goroutine's work minus the read
// syscall); "loopback" goes all the way: a phone's write, the endpoint's
// read goroutine, the relay's write, and the far phone's read. Both must
// report 0 allocs/op.
//
// "loopback-netpoll" is "loopback" with the legs' sockets read and written
// through Go's netpoller (the portable path, and every platform's before
// the Linux epoll path); on other platforms the two are the same.
func BenchmarkRelayPerPacket(b *testing.B) {
	for _, path := range []string{"inject", "loopback", "loopback-netpoll"} {
		for _, codecs := range [][2]Codec{{PCMU, PCMU}, {PCMU, PCMA}} {
			b.Run(fmt.Sprintf("%s/%v-%v", path, codecs[0], codecs[1]), func(b *testing.B) {
				benchRelay(b, path != "inject", path == "loopback-netpoll", codecs[0], codecs[1])
			})
		}
	}
}

func benchRelay(b *testing.B, loopback, netpoll bool, from, to Codec) {
	s := NewScheduler(SchedulerOptions{})
	s.portableIO = netpoll
	defer s.Close()
	phoneA, phoneB := benchSocket(b), benchSocket(b)
	legA, err := NewEndpoint(benchSocket(b), EndpointOptions{Remote: addrOfConn(phoneA), Codec: from, Scheduler: s})
	if err != nil {
		b.Fatal(err)
	}
	defer legA.Close()
	legB, err := NewEndpoint(benchSocket(b), EndpointOptions{Remote: addrOfConn(phoneB), Codec: to, Scheduler: s})
	if err != nil {
		b.Fatal(err)
	}
	defer legB.Close()
	r, err := Bridge(legA, legB)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()

	template := make([]byte, rtpHeaderSize+SamplesPerFrame)
	hdr := rtp.Header{Version: 2, PayloadType: from.PayloadType(), SSRC: 1}
	if _, err := hdr.MarshalTo(template); err != nil {
		b.Fatal(err)
	}
	from.Encode(template[rtpHeaderSize:], sine(0, SamplesPerFrame))
	pkt := make([]byte, len(template))
	src := addrOfConn(phoneA)
	dst := legA.LocalAddr()
	in := make([]byte, 1500)
	if err := phoneB.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		copy(pkt, template)
		seq := uint16(i)
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		if !loopback {
			legA.handle(pkt, src)
			continue
		}
		if _, err := phoneA.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := phoneB.ReadFromUDPAddrPort(in); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := r.Stats().AToB; st.Packets+st.WriteErrors != uint64(b.N) && !loopback {
		b.Fatalf("relayed %d of %d packets", st.Packets, b.N)
	}
}
