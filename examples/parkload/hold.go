package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
)

// holdCall is one call of the hold mode: its RTP stream and, once parked,
// its dialog.
type holdCall struct {
	stream *holdStream
	offer  []byte
	d      *sipgo.DialogClientSession // nil when the park failed
	held   bool                       // up when the window opened
}

// holdRun is the state of one hold-mode run.
type holdRun struct {
	cfg    *config
	a      *agent
	probe  *serverProbe
	meters holdMeters
	calls  []*holdCall
	fails  failures
	parked atomic.Int64
	phase  atomic.Value // string, for the progress line
	park   AtomicHistogram
	bye    AtomicHistogram
	// rx reads the music; receiver is its kind (rxRing or rxSockets).
	rx       holdReceiver
	receiver string
}

// runHold is the hold mode: park -calls calls at -rate, pausing at each
// checkpoint to sample the server; wait -warmup; measure the music of
// every call for -hold; then BYE them all.
func runHold(cfg *config, a *agent, probe *serverProbe, stderr io.Writer) (*report, error) {
	h := &holdRun{cfg: cfg, a: a, probe: probe}
	h.meters.win = newWindow()
	h.meters.perSecond = make([]atomic.Uint64, int(cfg.hold/time.Second))
	ports := newRTPPorts(cfg.local, cfg.rtpMin, cfg.rtpMax)
	rx, kind, err := newHoldReceiver(&h.meters, ports, cfg.rx)
	if err != nil {
		return nil, err
	}
	h.rx, h.receiver = rx, kind
	defer rx.stop()

	// Every socket exists, and is read, before the first INVITE, so the
	// ramp's pace is not the pace of bind().
	h.calls = make([]*holdCall, 0, cfg.calls)
	for range cfg.calls {
		st, err := rx.open()
		if err != nil {
			return nil, err
		}
		h.calls = append(h.calls, &holdCall{stream: st, offer: sdpOffer(cfg.local, st.port, rand.Uint64()>>2)})
	}
	rx.start()

	ctx := context.Background()
	var samples []serverSample
	cpu0, _ := selfUsage()
	start := time.Now()

	// Ramp, segment by segment: the calls up to the next checkpoint at
	// -rate, then (with a probe) a pause for the server to settle and a
	// sample of its heap with that many calls parked.
	h.phase.Store("parking")
	stopProgress := progress(stderr, cfg.progress, func(elapsed time.Duration) string {
		return fmt.Sprintf("%5.0fs  %s  %d parked  %d failures", elapsed.Seconds(), h.phase.Load(), h.parked.Load(), h.fails.total())
	})
	defer stopProgress()
	launched := 0
	interval := time.Duration(float64(time.Second) / cfg.rate)
	for _, cp := range cfg.checkpoints {
		h.parkRange(ctx, launched, cp, interval)
		launched = cp
		if probe.enabled() {
			if cp > 0 {
				time.Sleep(cfg.checkpointSettle)
			}
			n := int(h.parked.Load())
			samples = append(samples, probe.sample(ctx, fmt.Sprintf("ramp %d", cp), n))
		}
	}

	// The window: every call parked, music settled.
	winStart := time.Now().Add(cfg.warmup)
	winEnd := winStart.Add(cfg.hold)
	h.meters.win.end.Store(winEnd.UnixNano())
	h.meters.win.start.Store(winStart.UnixNano())
	h.phase.Store("warming up")
	time.Sleep(time.Until(winStart))
	h.phase.Store("measuring")
	held := 0
	for _, c := range h.calls {
		c.held = c.d != nil && c.d.Context().Err() == nil
		if c.held {
			held++
		}
	}
	cpuW0, _ := selfUsage()
	mach0, _ := readMachine()
	t0 := time.Now()
	// Only /proc here: a heap sample forces a GC in the server, which
	// would land in the window it is meant to measure.
	cpuOnly := &serverProbe{pid: probe.pid}
	var w0, w1 serverSample
	if cpuOnly.enabled() {
		w0 = cpuOnly.sample(ctx, "window start", held)
	}
	time.Sleep(time.Until(winEnd))
	cpuW1, _ := selfUsage()
	mach1, _ := readMachine()
	wallW := time.Since(t0)
	heldThrough := h.up()
	if cpuOnly.enabled() {
		w1 = cpuOnly.sample(ctx, "window end", heldThrough)
		samples = append(samples, w0, w1)
	}
	if probe.base != "" {
		samples = append(samples, probe.sample(ctx, "held", heldThrough))
	}

	// Hang up every call still up, at -rate.
	h.phase.Store("hanging up")
	endedByServer := h.hangupAll(ctx, interval)
	if probe.enabled() {
		time.Sleep(cfg.checkpointSettle)
		samples = append(samples, probe.sample(ctx, "after BYE", 0))
	}
	elapsed := time.Since(start)
	cpu1, maxRSS := selfUsage()

	// The counts are final once the receiver has stopped.
	rx.stop()

	r := &report{
		Mode: "hold", Target: cfg.target.String(), Transport: cfg.transport, Calls: cfg.calls,
		ElapsedS: elapsed.Seconds(), Parked: heldThrough, EndedByServer: endedByServer,
		Park: latencyOf(h.park.Snapshot()), Bye: latencyOf(h.bye.Snapshot()),
	}
	r.Failures, r.FailuresBy = h.fails.snapshot()
	r.RTP = h.rtpReport(held, winEnd.Sub(winStart))
	cpu := cpu1 - cpu0
	win := winEnd.Sub(winStart).Seconds()
	r.Tool = toolReport{CPUS: cpu.Seconds(), CPUPct: 100 * cpu.Seconds() / elapsed.Seconds(), MaxRSS: maxRSS}
	if wcpu := (cpuW1 - cpuW0).Seconds(); win > 0 {
		r.Tool.WindowCPUPct = 100 * wcpu / win
		if held > 0 {
			r.Tool.CPUPerCallSecUs = wcpu * 1e6 / (float64(held) * win)
		}
	}
	fillServer(r, cfg.serverPID, samples)
	if s := r.Server; s != nil {
		if cfg.serverPID > 0 && w1.At.After(w0.At) {
			wcpu := (w1.CPU - w0.CPU).Seconds()
			s.WindowCPUPct = 100 * wcpu / w1.At.Sub(w0.At).Seconds()
			if held > 0 {
				s.CPUPerCallSecUs = wcpu * 1e6 / (float64(held) * w1.At.Sub(w0.At).Seconds())
			}
		}
		heapPerCall(s)
	}
	serverCPU := time.Duration(-1)
	if cfg.serverPID > 0 {
		serverCPU = w1.CPU - w0.CPU
	}
	r.Machine = newMachineReport(mach0, mach1, wallW, cpuW1-cpuW0, serverCPU)
	r.Inbound = h.a.inbound()
	return r, nil
}

// parkRange parks calls [from, to) paced one per interval from now, at
// most -park-concurrency INVITEs outstanding, and returns when each has
// its answer.
func (h *holdRun) parkRange(ctx context.Context, from, to int, interval time.Duration) {
	sem := make(chan struct{}, h.cfg.parkConcurrency)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := from; i < to; i++ {
		if d := time.Until(t0.Add(time.Duration(i-from) * interval)); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		c := h.calls[i]
		wg.Go(func() {
			defer func() { <-sem }()
			h.parkOne(ctx, c)
		})
	}
	wg.Wait()
}

func (h *holdRun) parkOne(ctx context.Context, c *holdCall) {
	t0 := time.Now()
	d, res, err := h.a.invite(ctx, h.cfg.parkExt, c.offer)
	if err != nil {
		h.fails.add("park", failureKind(err))
		return
	}
	h.park.Record(time.Since(t0))
	if res.GetHeader("X-Park-Orbit") == nil {
		h.fails.add("park", "no X-Park-Orbit") // counted, and held all the same
	}
	c.stream.ackAt.Store(time.Now().UnixNano())
	if err := d.Ack(ctx); err != nil {
		h.fails.add("park-ack", "transport")
		d.Close()
		return
	}
	c.d = d
	h.parked.Add(1)
}

// up counts the parked calls the server has not hung up.
func (h *holdRun) up() int {
	n := 0
	for _, c := range h.calls {
		if c.d != nil && c.d.Context().Err() == nil {
			n++
		}
	}
	return n
}

// hangupAll sends BYE on every call still up, paced at -rate, and returns
// how many the server had ended already.
func (h *holdRun) hangupAll(ctx context.Context, interval time.Duration) (endedByServer int) {
	sem := make(chan struct{}, h.cfg.byeConcurrency)
	var wg sync.WaitGroup
	t0 := time.Now()
	i := 0
	for _, c := range h.calls {
		if c.d == nil {
			continue
		}
		if c.d.Context().Err() != nil {
			endedByServer++
			continue
		}
		if d := time.Until(t0.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		i++
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			t := time.Now()
			if err := h.a.bye(ctx, c.d); err != nil {
				h.fails.add("bye", failureKind(err))
				return
			}
			h.bye.Record(time.Since(t))
		})
	}
	wg.Wait()
	return endedByServer
}

// rtpReport adds up what the receiver saw of the calls up when the window
// opened, during the window of length win, against one packet per 20 ms
// each.
func (h *holdRun) rtpReport(held int, win time.Duration) rtpReport {
	perCall := uint64(win / packetTime)
	r := rtpReport{WindowS: win.Seconds(), Expected: uint64(held) * perCall, KernelTimestamps: h.meters.kernelTS.Load(), Receiver: h.receiver, ToolDropped: h.rx.overruns()}
	worst := -1.0
	var maxGap time.Duration
	for _, c := range h.calls {
		if !c.held {
			continue
		}
		st := &c.stream.stats
		r.Received += st.inWindow
		r.SeqLost += st.seqLost
		if st.inWindow == 0 {
			r.CallsSilent++
		}
		if st.beforeAck {
			r.BeforeAck++
		}
		maxGap = max(maxGap, st.maxGap)
		if perCall > 0 {
			pct := 100 * float64(st.inWindow) / float64(perCall)
			if worst < 0 || pct < worst {
				worst = pct
			}
		}
	}
	if r.Expected > 0 {
		r.ReceivedPct = 100 * float64(r.Received) / float64(r.Expected)
	}
	r.WorstCallPct = max(worst, 0)
	if held > 0 {
		perSecond := float64(held) * float64(time.Second/packetTime)
		for i := range h.meters.perSecond {
			r.PerSecondPct = append(r.PerSecondPct, math.Round(1e5*float64(h.meters.perSecond[i].Load())/perSecond)/1e3)
		}
	}
	r.MaxGapMs = ms(maxGap)
	jl, fl := latencyOf(h.meters.jitter.Snapshot()), latencyOf(h.meters.firstAfter.Snapshot())
	if jl.Count > 0 {
		r.Jitter = &jl
	}
	if fl.Count > 0 {
		r.FirstPacket = &fl
	}
	return r
}
