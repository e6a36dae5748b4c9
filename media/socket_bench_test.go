package media

import (
	"net"
	"net/netip"
	"testing"
)

// BenchmarkLegSocket is one leg's socket from start to end, without
// traffic: a new socket per leg (net.ListenUDP, NewEndpoint, Close), as
// sipadapter's PortPool did before issue 16, against a Socket kept bound
// and handed to the next leg (NewSocketEndpoint, Close, Discard).
func BenchmarkLegSocket(b *testing.B) {
	sched := NewScheduler(SchedulerOptions{})
	defer sched.Close()
	opts := EndpointOptions{Codec: PCMU, Scheduler: sched}
	addr := netip.MustParseAddrPort("127.0.0.1:0")
	// A leg that stays keeps the scheduler's epoll set running, as the
	// parked calls of a busy server do.
	stay, err := ListenSocket(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer stay.Close()
	keep, err := NewSocketEndpoint(stay, opts)
	if err != nil {
		b.Fatal(err)
	}
	defer keep.Close()

	b.Run("bind-per-leg", func(b *testing.B) {
		for b.Loop() {
			conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
			if err != nil {
				b.Fatal(err)
			}
			e, err := NewEndpoint(conn, opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept-socket", func(b *testing.B) {
		s, err := ListenSocket(addr)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			s.Discard()
			e, err := NewSocketEndpoint(s, opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
