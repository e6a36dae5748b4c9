package media

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// discardWriter is a PacketWriter that sends nothing: the send path's own
// CPU, without the system call that dominates it.
type discardWriter struct{}

func (discardWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) { return len(b), nil }

// BenchmarkSRTPPerPacket compares the scheduler's send path for SRTP
// streams against plain ones (issue 17: at most 1.5× the plain per-packet
// CPU), in the same run, driven as BenchmarkSchedulerPerPacket drives it (a
// fake clock, every stream due at each call, 1,000 streams on one shard),
// each SRTP stream with its own context and key as each leg has. Three
// paths:
//
//   - discard: the packets go nowhere; the send path's own work only
//     (heap, header, frame copy, and for SRTP the AES-CM keystream and the
//     HMAC-SHA1 tag);
//   - socket: each packet written with one system call from a loopback
//     socket, as a leg with its own port;
//   - shared: a SharedPort, whose packets leave in sendmmsg batches on
//     Linux (encrypted in the batch's buffers).
//
// It reports ns/packet for both kinds, x-plain (SRTP over plain) and the
// allocations per packet of each.
func BenchmarkSRTPPerPacket(b *testing.B) {
	for _, path := range []string{"discard", "socket", "shared"} {
		b.Run(path, func(b *testing.B) {
			plain, plainAllocs := benchSendPath(b, path, false)
			secure, secureAllocs := benchSendPath(b, path, true)
			b.ReportMetric(plain, "plain-ns/packet")
			b.ReportMetric(secure, "srtp-ns/packet")
			b.ReportMetric(secure/plain, "x-plain")
			b.ReportMetric(plainAllocs, "plain-allocs/packet")
			b.ReportMetric(secureAllocs, "srtp-allocs/packet")
		})
	}
}

// benchSendPath sends b.N packets through path and returns the wall time
// and allocations per packet.
func benchSendPath(b *testing.B, path string, secure bool) (nsPerPacket, allocsPerPacket float64) {
	s := newScheduler(SchedulerOptions{Shards: 1})
	defer s.Close()
	var fake time.Duration
	s.now = func() time.Duration { return fake }
	sh := s.shards[0]

	var w PacketWriter = discardWriter{}
	dst := netip.MustParseAddrPort("127.0.0.1:9")
	switch path {
	case "socket":
		w, dst = benchSocket(b), addrOfConn(benchSocket(b))
	case "shared":
		port, err := NewSharedPort(benchSocket(b), SharedPortOptions{Scheduler: s})
		if err != nil {
			b.Fatal(err)
		}
		defer port.Close()
		w, dst = port, addrOfConn(benchSocket(b))
	}
	frames := testFrames(PCMU, 50)
	for range min(1000, b.N) {
		var protect *srtpOut
		if secure {
			var err error
			if protect, err = newSRTPOut(SuiteAESCM128SHA1_80, NewSRTPKey()); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.play(w, dst, frames, PCMU, 0, newTxState(time.Now()), false, protect); err != nil {
			b.Fatal(err)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	for sh.packets.Load()+sh.writeErrors.Load() < uint64(b.N) {
		fake += FrameDuration
		sh.sendDue(context.Background())
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if errs := sh.writeErrors.Load(); errs > 0 {
		b.Fatalf("%d write errors", errs)
	}
	sent := float64(sh.packets.Load())
	return float64(elapsed.Nanoseconds()) / sent, float64(after.Mallocs-before.Mallocs) / sent
}
