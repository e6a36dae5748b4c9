package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
)

// cycleWorker places one call at a time: park, retrieve, hang up. Its two
// RTP sockets (the parked party's and the retriever's) serve every cycle.
type cycleWorker struct {
	a     *agent
	fails *failures
	done  *atomic.Uint64 // cycles completed, shared
	pace  *pacer         // nil: unpaced

	rtp    [2]*net.UDPConn
	offers [2][]byte
	pkts   atomic.Uint64

	park, retrieve, bye, serverBye Histogram
	turn                           int // cycles started: which node of -cluster-targets parks
}

func newCycleWorker(a *agent, ports *rtpPorts, fails *failures, done *atomic.Uint64) (*cycleWorker, error) {
	// Workers start at random nodes of -cluster-targets, not all at the first.
	w := &cycleWorker{a: a, fails: fails, done: done, turn: rand.IntN(1 << 16)}
	if err := openLegMedia(ports, a.cfg.local, w.rtp[:], w.offers[:]); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *cycleWorker) close() { closeLegMedia(w.rtp[:]) }

// run cycles until stop ends; the cycle under way is finished.
func (w *cycleWorker) run(stop context.Context) {
	for _, c := range w.rtp {
		go countPackets(c, &w.pkts)
	}
	for stop.Err() == nil {
		if w.pace != nil && !w.pace.wait(stop) {
			return
		}
		w.cycle()
	}
}

// pacer spaces cycle starts over all workers: slot k starts no earlier
// than start + k/rate. A worker that is late takes the next slot at once,
// so the rate is a ceiling, reached when the server keeps up.
type pacer struct {
	start    time.Time
	interval time.Duration
	next     atomic.Int64
}

// newPacer paces rate cycles a second; nil (unpaced) when rate is not
// positive.
func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{start: time.Now(), interval: time.Duration(float64(time.Second) / rate)}
}

// wait blocks until the caller's slot; false if stop ended first.
func (p *pacer) wait(stop context.Context) bool {
	at := p.start.Add(time.Duration(p.next.Add(1)-1) * p.interval)
	d := time.Until(at)
	if d <= 0 {
		return stop.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop.Done():
		return false
	}
}

// cycle is one park → retrieve → BYE. Each step that fails is counted
// once, by its status code or kind, and the calls it left are hung up so
// the next cycle starts clean.
func (w *cycleWorker) cycle() {
	ctx := context.Background()
	a := w.a

	parkAt, retrieveAt := a.cfg.target, a.cfg.target
	if n := len(a.cfg.retrieveAt); n > 0 {
		parkAt, retrieveAt = a.cfg.retrieveAt[w.turn%n], a.cfg.retrieveAt[(w.turn+1)%n]
		w.turn++
	}
	t0 := time.Now()
	parked, res, err := a.inviteAt(ctx, parkAt, a.cfg.parkExt, w.offers[0])
	if err != nil {
		w.fails.add("park", failureKind(err))
		return
	}
	w.park.Record(time.Since(t0))
	orbit := ""
	if h := res.GetHeader("X-Park-Orbit"); h != nil {
		orbit = h.Value()
	}
	if err := parked.Ack(ctx); err != nil {
		w.fails.add("park-ack", "transport")
		parked.Close()
		return
	}
	if orbit == "" {
		w.fails.add("park", "no X-Park-Orbit")
		w.hangup(ctx, parked)
		return
	}

	t1 := time.Now()
	retriever, _, err := a.inviteAt(ctx, retrieveAt, orbit, w.offers[1])
	if err != nil {
		w.fails.add("retrieve", failureKind(err))
		w.hangup(ctx, parked)
		return
	}
	w.retrieve.Record(time.Since(t1))
	if err := retriever.Ack(ctx); err != nil {
		w.fails.add("retrieve-ack", "transport")
		retriever.Close()
		w.hangup(ctx, parked)
		return
	}

	// The retriever hangs up; the server passes the BYE on to the parked
	// party, whose dialog ReadBye then ends.
	t2 := time.Now()
	if err := a.bye(ctx, retriever); err != nil {
		w.fails.add("bye", failureKind(err))
		w.hangup(ctx, parked)
		return
	}
	w.bye.Record(time.Since(t2))
	timer := time.NewTimer(a.cfg.timeout)
	defer timer.Stop()
	select {
	case <-parked.Context().Done():
		w.serverBye.Record(time.Since(t2))
	case <-timer.C:
		w.fails.add("server-bye", "timeout")
		w.hangup(ctx, parked)
		return
	}
	w.done.Add(1)
}

// hangup ends a call the cycle gave up on; its own failure is not counted
// again.
func (w *cycleWorker) hangup(ctx context.Context, d *sipgo.DialogClientSession) {
	_ = w.a.bye(ctx, d)
}

// runCycle is the cycle mode: -workers workers for -duration.
func runCycle(cfg *config, a *agent, probe *serverProbe, stderr io.Writer) (*report, error) {
	ports := newRTPPorts(cfg.local, cfg.rtpMin, cfg.rtpMax)
	var fails failures
	var done atomic.Uint64
	workers := make([]*cycleWorker, 0, cfg.workers)
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	for range cfg.workers {
		w, err := newCycleWorker(a, ports, &fails, &done)
		if err != nil {
			return nil, err
		}
		workers = append(workers, w)
	}

	var samples []serverSample
	if probe.enabled() {
		samples = append(samples, probe.sample(context.Background(), "start", 0))
	}
	cpu0, _ := selfUsage()
	mach0, _ := readMachine()
	start := time.Now()
	stop, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	pace := newPacer(cfg.cycleRate)
	var wg sync.WaitGroup
	for _, w := range workers {
		w.pace = pace
		wg.Go(func() { w.run(stop) })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var last uint64
	var lastAt time.Duration
	stopProgress := progress(stderr, cfg.progress, func(elapsed time.Duration) string {
		n := done.Load()
		rate := float64(n-last) / (elapsed - lastAt).Seconds()
		last, lastAt = n, elapsed
		return fmt.Sprintf("%5.0fs  %d cycles, %.0f/s lately  %d failures", elapsed.Seconds(), n, rate, fails.total())
	})
	perSecond := sampleRate(&done, finished)
	<-finished
	stopProgress()
	slowest, fastest := perSecond()
	elapsed := time.Since(start)
	cpu1, maxRSS := selfUsage()
	mach1, _ := readMachine()
	if probe.enabled() {
		samples = append(samples, probe.sample(context.Background(), "end", 0))
	}

	var park, retrieve, bye, serverBye Histogram
	var pkts uint64
	for _, w := range workers {
		park.Merge(&w.park)
		retrieve.Merge(&w.retrieve)
		bye.Merge(&w.bye)
		serverBye.Merge(&w.serverBye)
		pkts += w.pkts.Load()
	}
	cycles := done.Load()
	r := &report{
		Mode: "cycle", Target: cfg.target.String(), Transport: cfg.transport, Workers: cfg.workers,
		ElapsedS: elapsed.Seconds(), Cycles: cycles, CyclesPerSec: float64(cycles) / elapsed.Seconds(),
		CyclesPerSecMin: slowest, CyclesPerSecMax: fastest,
		Park: latencyOf(&park), Bye: latencyOf(&bye),
		RTP: rtpReport{Received: pkts},
	}
	rl, sl := latencyOf(&retrieve), latencyOf(&serverBye)
	r.Retrieve, r.ServerBye = &rl, &sl
	r.Failures, r.FailuresBy = fails.snapshot()
	cpu := cpu1 - cpu0
	r.Tool = toolReport{CPUS: cpu.Seconds(), CPUPct: 100 * cpu.Seconds() / elapsed.Seconds(), MaxRSS: maxRSS}
	if cycles > 0 {
		r.Tool.CPUPerCycleUs = float64(cpu.Microseconds()) / float64(cycles)
	}
	fillServer(r, cfg.serverPID, samples)
	if r.Server != nil && cycles > 0 && cfg.serverPID > 0 {
		r.Server.CPUPerCycleUs = r.Server.CPUS * 1e6 / float64(cycles)
	}
	serverCPU := time.Duration(-1)
	if len(samples) == 2 && cfg.serverPID > 0 {
		serverCPU = samples[1].CPU - samples[0].CPU
	}
	r.Machine = newMachineReport(mach0, mach1, elapsed, cpu, serverCPU)
	r.Inbound = a.inbound()
	return r, nil
}

// sampleRate counts the cycles of each whole second until done is closed;
// the function it returns (call it after done) gives the slowest and the
// fastest second, both 0 for a run shorter than two seconds. The last,
// partial second is left out: workers finishing their cycles are not a
// slow second.
func sampleRate(n *atomic.Uint64, done <-chan struct{}) func() (slowest, fastest float64) {
	var lo, hi float64
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		prev := n.Load()
		seconds := 0
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cur := n.Load()
			rate := float64(cur - prev)
			prev = cur
			if seconds++; seconds == 1 || rate < lo {
				lo = rate
			}
			hi = max(hi, rate)
		}
	}()
	return func() (float64, float64) {
		<-exited
		return lo, hi
	}
}

// progress prints a line to w every interval (never when it is 0) until
// the function it returns is called; that function returns once the last
// line is out.
func progress(w io.Writer, interval time.Duration, line func(elapsed time.Duration) string) (stop func()) {
	if interval <= 0 {
		return func() {}
	}
	start := time.Now()
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, "parkload:", line(time.Since(start)))
			}
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}
