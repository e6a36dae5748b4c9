// Command embed shows call park embedded in a Go program with no SIP at all:
// the park, orbit and media packages, an in-memory lot, and real hold music
// sent as RTP to a local UDP sink.
//
// Three simulated calls are parked. Carol retrieves the first; nobody picks
// up the second, so after the pickup timeout it rings back its parker (who
// does not answer) and then the fallback (who does); the third caller hangs
// up while parked. Every event is printed as it happens, and the program
// ends on its own once the lot is empty, in about 20 seconds on its defaults
// (Lync Server 2013's 10 s minimum pickup timeout applies).
//
//	go run ./examples/embed
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

func main() {
	timeout := flag.Duration("timeout", park.MinPickupTimeout, "pickup timeout before a parked call is recalled (10s-10m)")
	ring := flag.Duration("ring", 4*time.Second, "how long each recall rings the parker")
	flag.Parse()
	if err := run(*timeout, *ring); err != nil {
		fmt.Fprintln(os.Stderr, "embed:", err)
		os.Exit(1)
	}
}

func run(timeout, ring time.Duration) error {
	start := time.Now()
	say := func(format string, args ...any) {
		fmt.Printf("%5.1fs  %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	// The sink stands in for the parked phones: it counts the RTP they get.
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer sink.Close()
	var received atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()

	// One scheduler paces the music of every parked call.
	scheduler := media.NewScheduler(media.SchedulerOptions{})
	defer scheduler.Close()
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()

	lot, err := park.NewLot(park.Config{
		// Synthesised once, shared by every parked call and its encodings.
		MusicOnHold:    media.BuiltinMusic(),
		PickupTimeout:  timeout,
		RecallRingTime: ring,
		FallbackURI:    "sip:operator@example.com",
		Dialer:         simulatedPhones{say: say},
	})
	if err != nil {
		return err
	}
	lot.Observe(park.ObserverFunc(func(e park.Event) { say("event  %s", e) }))

	ctx := context.Background()
	var calls []*park.Call
	for _, who := range []string{"alice", "dave", "erin"} {
		leg := &rtpLeg{name: who, scheduler: scheduler, dst: sinkAddr}
		c, err := lot.Park(ctx, park.ParkRequest{Leg: leg, Parker: "sip:bob@example.com", Party: "sip:" + who + "@example.com"})
		if err != nil {
			return err
		}
		say("%s parked at orbit %s (park ID %s), hearing %q", who, c.Orbit(), c.ID(), lot.Music().Name())
		calls = append(calls, c)
	}

	time.Sleep(2 * time.Second)
	got, err := lot.Retrieve(ctx, park.RetrieveRequest{Orbit: calls[0].Orbit(), ParkID: calls[0].ID(), Retriever: "sip:carol@example.com"})
	if err != nil {
		return err
	}
	leg := got.Leg().(*rtpLeg)
	leg.stop()
	say("carol dialled %s and talks to %s (%d music packets sent to it)", got.Orbit(), leg.name, leg.sent())

	time.Sleep(2 * time.Second)
	calls[2].Abandon()
	leg = calls[2].Leg().(*rtpLeg)
	leg.stop()
	say("erin hung up while parked at %s", calls[2].Orbit())

	<-calls[1].Done()
	say("dave's call left the lot: %s", calls[1].Outcome())

	if err := lot.Shutdown(ctx); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond) // let the last packets land in the sink
	st := scheduler.Stats()
	say("done: %d RTP packets sent, %d received by the sink, %d sent more than 2 ms late",
		st.Packets, received.Load(), st.Lateness.Total()-st.Lateness.Within1ms-st.Lateness.Within2ms)
	return nil
}

// rtpLeg is a parked call whose hold music is real RTP from its own UDP port.
type rtpLeg struct {
	name      string
	scheduler *media.Scheduler
	dst       netip.AddrPort

	mu     sync.Mutex
	conn   *net.UDPConn
	stream *media.Stream
}

func (l *rtpLeg) Hold(_ context.Context, music park.Music) error {
	var clip *media.Clip
	switch m := music.(type) {
	case nil:
		return nil // music on hold is off
	case *media.Clip:
		clip = m
	default:
		// park.BuiltinMusic() (a lot with no MusicOnHold) would be this
		// host's own built-in music: main gives the lot a clip instead, so
		// that it is built once, not per park.
		return fmt.Errorf("cannot play %q (%T)", music.Name(), music)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	stream, err := l.scheduler.Play(conn, l.dst, clip.Frames(media.PCMU))
	if err != nil {
		conn.Close()
		return err
	}
	l.mu.Lock()
	l.conn, l.stream = conn, stream
	l.mu.Unlock()
	return nil
}

func (l *rtpLeg) Hangup(context.Context) error {
	l.stop()
	fmt.Printf("        %s is hung up\n", l.name)
	return nil
}

// stop ends the music, as a host does when it bridges or hangs up the leg.
func (l *rtpLeg) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stream != nil {
		l.stream.Stop()
		l.conn.Close()
	}
}

func (l *rtpLeg) sent() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stream == nil {
		return 0
	}
	return l.stream.Stats().Packets
}

// simulatedPhones stands in for the SIP side: bob never answers a recall,
// the operator (the fallback) answers after a second.
type simulatedPhones struct{ say func(string, ...any) }

func (p simulatedPhones) Dial(ctx context.Context, req park.DialRequest) (park.Answered, error) {
	p.say("ring   %s %s (attempt %d) for orbit %s", req.Purpose, req.Target, req.Attempt, req.Call.Orbit)
	if req.Purpose == park.Recall {
		<-ctx.Done() // bob is away
		return nil, ctx.Err()
	}
	select {
	case <-time.After(time.Second):
		return operator{p.say}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type operator struct{ say func(string, ...any) }

func (o operator) Connect(_ context.Context, leg park.Leg) error {
	l, ok := leg.(*rtpLeg)
	if !ok {
		return errors.New("not a leg of ours")
	}
	l.stop()
	o.say("the operator answered and talks to %s", l.name)
	return nil
}

func (o operator) Hangup(context.Context) error { return nil }
