//go:build linux

package media

import (
	"fmt"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// benchRawSocket opens a loopback socket and takes it out of Go's netpoller
// as NewEndpoint does on Linux: a duplicate descriptor, the original closed.
func benchRawSocket(b *testing.B) (*rawSocket, netip.AddrPort) {
	b.Helper()
	conn := benchSocket(b)
	raw, err := dupSocket(conn)
	if err != nil {
		b.Fatal(err)
	}
	_ = conn.Close()
	b.Cleanup(func() { _ = raw.close() })
	return raw, addrOfConn(conn)
}

// BenchmarkRawSendtoBaseline is BenchmarkWriteToUDPBaseline through the
// Linux endpoint's socket: one raw sendto per packet on a descriptor no
// epoll set watches for EPOLLOUT.
func BenchmarkRawSendtoBaseline(b *testing.B) {
	raw, _ := benchRawSocket(b)
	dst := addrOfConn(benchSocket(b))
	pkt := make([]byte, rtpHeaderSize+SamplesPerFrame)
	pkt[0] = 0x80
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := raw.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/packet")
}

// BenchmarkSchedulerPerPacketRaw is BenchmarkSchedulerPerPacket through the
// Linux endpoint's socket (its baseline too).
func BenchmarkSchedulerPerPacketRaw(b *testing.B) {
	raw, _ := benchRawSocket(b)
	benchSchedulerPerPacket(b, raw, addrOfConn(benchSocket(b)))
}

// BenchmarkEndpointMusic plays hold music from N endpoints, each on its own
// socket, as a park server's parked legs, for a 2 s window after a warm-up,
// once with the sockets in Go's netpoller ("netpoll": the portable path,
// and the code before issue 16) and once read from the scheduler's epoll
// sets and written with raw sendto ("epoll"). The four sinks are not read,
// so that the figures are the sender's: CPU per packet is the whole
// process's (user + system) over the packets the scheduler sent.
func BenchmarkEndpointMusic(b *testing.B) {
	for _, n := range []int{2000, 5000} {
		for _, path := range []string{"netpoll", "epoll", "shared"} {
			b.Run(fmt.Sprintf("%s/%d", path, n), func(b *testing.B) {
				benchEndpointMusic(b, n, path)
			})
		}
	}
}

func benchEndpointMusic(b *testing.B, n int, path string) {
	const (
		warmUp = 300 * time.Millisecond
		window = 2 * time.Second
	)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(2*n+100) {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d endpoints", lim.Cur, n)
	}
	sinks := make([]netip.AddrPort, 4)
	for i := range sinks {
		sink := benchSocket(b)
		_ = sink.SetReadBuffer(8 << 20)
		sinks[i] = addrOfConn(sink)
	}
	frames := testFrames(PCMU, 50)
	b.ResetTimer()
	for range b.N {
		s := NewScheduler(SchedulerOptions{})
		s.portableIO = path == "netpoll"
		var port *SharedPort
		if path == "shared" {
			var err error
			if port, err = NewSharedPort(benchSocket(b), SharedPortOptions{Scheduler: s}); err != nil {
				b.Fatal(err)
			}
		}
		eps := make([]*Endpoint, n)
		for i := range eps {
			opts := EndpointOptions{Remote: sinks[i%len(sinks)], Codec: PCMU, Scheduler: s}
			var e *Endpoint
			var err error
			if port != nil {
				e, err = port.NewEndpoint(opts)
			} else {
				e, err = NewEndpoint(benchSocket(b), opts)
			}
			if err != nil {
				b.Fatal(err)
			}
			if err := e.PlayMusic(frames); err != nil {
				b.Fatal(err)
			}
			eps[i] = e
		}
		time.Sleep(warmUp)
		var r0, r1 syscall.Rusage
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
		st0 := s.Stats()
		t0 := time.Now()
		time.Sleep(window)
		st1 := s.Stats()
		elapsed := time.Since(t0)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
		runtime.ReadMemStats(&m1)
		for _, e := range eps {
			_ = e.Close()
		}
		if port != nil {
			_ = port.Close()
		}
		_ = s.Close()

		l := Lateness{
			Within1ms:  st1.Lateness.Within1ms - st0.Lateness.Within1ms,
			Within2ms:  st1.Lateness.Within2ms - st0.Lateness.Within2ms,
			Within5ms:  st1.Lateness.Within5ms - st0.Lateness.Within5ms,
			Within20ms: st1.Lateness.Within20ms - st0.Lateness.Within20ms,
			Later:      st1.Lateness.Later - st0.Lateness.Later,
		}
		packets := float64(l.Total())
		if packets == 0 {
			b.Fatal("no packets sent")
		}
		cpu := time.Duration(r1.Utime.Nano() + r1.Stime.Nano() - r0.Utime.Nano() - r0.Stime.Nano())
		b.ReportMetric(100*float64(l.Within1ms+l.Within2ms)/packets, "late<=2ms-%")
		b.ReportMetric(p99Lateness(l), "p99-late-ms")
		b.ReportMetric(packets/elapsed.Seconds(), "packets/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/packets, "cpu-ns/packet")
		b.ReportMetric(float64(st1.WriteErrors-st0.WriteErrors)/packets, "write-errors/packet")
		b.ReportMetric(float64(m1.Mallocs-m0.Mallocs)/packets, "allocs/packet")
	}
}
