package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Soak mode: -workers workers loop for -duration over a random mix of
// scenarios, each one call from park to its end, while the server's heap,
// RSS and goroutines are sampled every -sample-every. Every call ends with
// an outcome (how it ended, as the contract says it may) or an anomaly
// (where it went wrong: an unexpected status, a call the server never
// ended); the report counts both, and the samples show whether the server
// stays flat.

// soakKind is a scenario of the mix.
type soakKind int

const (
	// park → retrieve → one side hangs up; the server passes the BYE on.
	soakRetrieve soakKind = iota
	// park → the parked party hangs up while parked.
	soakHangup
	// park → retrieve → REFER the parked party back to the park extension
	// → the final NOTIFY → the referrer hangs up → retrieve the new orbit
	// → hang up.
	soakRepark
	// as soakRepark, but the referrer hangs up right after the 202, before
	// the NOTIFYs (the contract calls that normal; many phones do it).
	soakReparkBye
	// as soakRepark, but nobody retrieves the new orbit: it times out and
	// the server recalls the referrer (its Referred-By).
	soakReparkTimeout
	// park naming a parker (Referred-By) → nobody retrieves → the server
	// recalls the parker, which answers, refuses (486), lets it ring out,
	// or retrieves the orbit while it rings.
	soakTimeout
	numSoakKinds
)

var soakKindNames = [numSoakKinds]string{"retrieve", "hangup", "repark", "repark-bye", "repark-timeout", "timeout"}

const defaultSoakMix = "retrieve=35,hangup=20,repark=15,repark-bye=5,repark-timeout=5,timeout=20"

// soakMix holds the weight of each scenario.
type soakMix [numSoakKinds]int

func (m soakMix) total() int {
	n := 0
	for _, w := range m {
		n += w
	}
	return n
}

// pick chooses a scenario by weight.
func (m soakMix) pick(rng *rand.Rand) soakKind {
	x := rng.IntN(m.total())
	for k, w := range m {
		if x < w {
			return soakKind(k)
		}
		x -= w
	}
	return soakRetrieve
}

func (m soakMix) String() string {
	parts := make([]string, 0, numSoakKinds)
	for k, w := range m {
		if w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", soakKindNames[k], w))
		}
	}
	return strings.Join(parts, ",")
}

// parseSoakMix reads name=weight pairs; a scenario not named has weight 0.
func parseSoakMix(s string) (soakMix, error) {
	var m soakMix
	bad := func(why string) (soakMix, error) {
		return m, flagErr("-mix %q: %s; want name=weight pairs such as %s", s, why, defaultSoakMix)
	}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || err != nil || n < 0 || n > 1000 {
			return bad(fmt.Sprintf("bad pair %q", part))
		}
		k := slices.Index(soakKindNames[:], strings.TrimSpace(name))
		if k < 0 {
			return bad(fmt.Sprintf("no scenario %q", name))
		}
		m[k] = n
	}
	if m.total() == 0 {
		return bad("every weight is 0")
	}
	return m, nil
}

// counts is a tally by key, safe for the workers to share.
type counts struct {
	mu sync.Mutex
	by map[string]uint64
	n  uint64
}

func (c *counts) add(key string) {
	c.mu.Lock()
	if c.by == nil {
		c.by = make(map[string]uint64)
	}
	c.by[key]++
	c.n++
	c.mu.Unlock()
}

func (c *counts) total() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counts) snapshot() (uint64, map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	by := make(map[string]uint64, len(c.by))
	maps.Copy(by, c.by)
	return c.n, by
}

// soakReport is the soak mode's part of the report.
type soakReport struct {
	Mix           string  `json:"mix"`
	PickupTimeout float64 `json:"pickup_timeout_s"`
	RecallRing    float64 `json:"recall_ring_s"`
	Attempts      int     `json:"attempts"`

	// Started calls; each ended either with an outcome or failed (an
	// anomaly ended it). Unaccounted is Started − outcomes − Failed, and
	// must be 0.
	Started     uint64            `json:"started"`
	Outcomes    map[string]uint64 `json:"outcomes"`
	Failed      uint64            `json:"failed"`
	Unaccounted int64             `json:"unaccounted"`
	// Anomalies counts every one seen, by "step what": those that ended a
	// call (Failed) and those that did not (a recall after its call ended,
	// a recall nobody cancelled).
	Anomalies map[string]uint64 `json:"anomalies"`
	// Dialogs the tool still held after the load: 0 when every call ended.
	OpenDialogs int64 `json:"open_dialogs"`

	Refer       *latency `json:"refer,omitempty"`        // REFER → final NOTIFY
	RecallDelay *latency `json:"recall_delay,omitempty"` // park → first recall INVITE

	Samples []soakSample `json:"samples"`
	Verdict soakVerdict  `json:"verdict"`
}

// soakSample is the server at one moment of the soak.
type soakSample struct {
	Label      string  `json:"label"`
	ElapsedS   float64 `json:"elapsed_s"`
	InFlight   int64   `json:"in_flight"` // the tool's calls under way
	RSS        uint64  `json:"rss_bytes,omitempty"`
	HeapInuse  uint64  `json:"heap_inuse_bytes,omitempty"`
	HeapAlloc  uint64  `json:"heap_alloc_bytes,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	Err        string  `json:"error,omitempty"`

	cpu time.Duration // the server's CPU time so far, with -server-pid
}

// soakVerdict says whether the server stayed flat: its heap in use in the
// last periodic sample within HeapLimitPct of the first (both under the
// same load, the first after a warm-up), and its goroutines back to the
// start count (within goroutineSlack) in the idle sample, -settle after
// the load.
type soakVerdict struct {
	HeapRef        string   `json:"heap_ref,omitempty"` // the first periodic sample
	HeapEnd        string   `json:"heap_end,omitempty"` // the last, compared with it
	HeapGrowthPct  *float64 `json:"heap_growth_pct,omitempty"`
	HeapLimitPct   float64  `json:"heap_limit_pct"`
	HeapFlat       *bool    `json:"heap_flat,omitempty"` // nil: no periodic sample to compare with
	GoroutinesIdle int      `json:"goroutines_start,omitempty"`
	GoroutinesEnd  int      `json:"goroutines_end,omitempty"`
	GoroutinesBack *bool    `json:"goroutines_back,omitempty"` // nil: not sampled
	// How long after the load the count was first back (nil: never).
	GoroutinesBackAfterS *float64 `json:"goroutines_back_after_s,omitempty"`
	Flat                 bool     `json:"flat"`
}

const (
	heapLimitPct = 25
	// goroutineSlack allows for the probe's own HTTP connection to the
	// server's pprof listener, which may have been opened or closed
	// between the samples.
	goroutineSlack = 2
)

// soakRun is one soak.
type soakRun struct {
	cfg   *config
	a     *agent
	probe *serverProbe
	start time.Time

	seq       atomic.Uint64 // call numbers, for the parker URIs
	started   atomic.Uint64
	inFlight  atomic.Int64
	dialogs   atomic.Int64 // dialogs the tool holds
	outcomes  counts
	failed    atomic.Uint64
	anomalies counts

	park, retrieve, refer, recallDelay AtomicHistogram
	pkts                               atomic.Uint64
}

// result is how one call ended: an outcome, or the anomaly that ended it.
type result struct{ outcome, anomaly string }

func done(outcome string) result            { return result{outcome: outcome} }
func fail(step, what string) result         { return result{anomaly: step + " " + what} }
func failErr(step string, err error) result { return fail(step, failureKind(err)) }

// runSoak is the soak mode.
func runSoak(cfg *config, a *agent, probe *serverProbe, stderr io.Writer) (*report, error) {
	r := &soakRun{cfg: cfg, a: a, probe: probe}
	ports := newRTPPorts(cfg.local, cfg.rtpMin, cfg.rtpMax)
	workers := make([]*soakWorker, 0, cfg.workers)
	closeWorkers := func() {
		for _, w := range workers {
			w.close()
		}
		workers = workers[:0]
	}
	defer closeWorkers()
	for i := range cfg.workers {
		w, err := newSoakWorker(r, i, ports)
		if err != nil {
			return nil, err
		}
		workers = append(workers, w)
	}

	cpu0, _ := selfUsage()
	mach0, _ := readMachine()
	r.start = time.Now()
	var samples []soakSample
	samples = append(samples, r.sample("start"))
	// The start sample is the idle count, with the tool's workers and
	// their RTP readers not yet started.
	for _, w := range workers {
		w.startReaders()
	}

	stop, cancel := context.WithTimeout(context.Background(), cfg.duration)
	defer cancel()
	pace := newPacer(cfg.cycleRate)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.run(stop, pace) })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	// Periodic samples until every worker is done (the calls under way at
	// -duration run to their end).
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(cfg.sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-t.C:
				s := r.sample(sampleLabel(time.Since(r.start)))
				samples = append(samples, s) // read once sampled is closed
				fmt.Fprintf(stderr, "parkload: sample %s\n", s)
			}
		}
	}()
	stopProgress := progress(stderr, cfg.progress, func(elapsed time.Duration) string {
		return fmt.Sprintf("%5.0fs  %d calls started, %d in flight, %d outcomes, %d failed, %d anomalies",
			elapsed.Seconds(), r.started.Load(), r.inFlight.Load(), r.outcomes.total(), r.failed.Load(), r.anomalies.total())
	})
	<-finished
	<-sampled
	stopProgress()
	loadElapsed := time.Since(r.start)
	cpu1, maxRSS := selfUsage()
	mach1, _ := readMachine()
	samples = append(samples, r.sample("load end"))

	// The tool's RTP readers go, so that an in-process server's count
	// (the tests) compares like with like. Then the server settles: its
	// goroutines should come back to the start count at once, and its heap
	// once sipgo lets go of the finished transactions (Timer J keeps a
	// REFER's 32 s), so the idle sample waits out -settle.
	closeWorkers()
	settleStart := time.Now()
	backAfter := time.Duration(-1)
	if idle := samples[0].Goroutines; probe.base != "" && idle > 0 {
		for {
			n, err := probe.goroutines(context.Background())
			if err == nil && n <= idle+goroutineSlack {
				backAfter = time.Since(settleStart)
				break
			}
			if time.Since(settleStart) >= cfg.settle {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if rest := cfg.settle - time.Since(settleStart); rest > 0 {
		fmt.Fprintf(stderr, "parkload: load over; settling %.0f s before the idle sample\n", rest.Seconds())
		time.Sleep(rest)
	}
	samples = append(samples, r.sample("idle"))

	sr := r.soakReport(samples, backAfter)
	rep := &report{
		Mode: "soak", Target: cfg.target.String(), Transport: cfg.transport, Workers: cfg.workers,
		ElapsedS: loadElapsed.Seconds(), Cycles: r.started.Load(), CyclesPerSec: float64(r.started.Load()) / cfg.duration.Seconds(),
		Park: latencyOf(r.park.Snapshot()), Bye: latency{},
		RTP:  rtpReport{Received: r.pkts.Load()},
		Soak: sr,
	}
	rl := latencyOf(r.retrieve.Snapshot())
	rep.Retrieve = &rl
	rep.Failures, rep.FailuresBy = r.anomalies.snapshot()
	cpu := cpu1 - cpu0
	rep.Tool = toolReport{CPUS: cpu.Seconds(), CPUPct: 100 * cpu.Seconds() / loadElapsed.Seconds(), MaxRSS: maxRSS}
	if n := r.started.Load(); n > 0 {
		rep.Tool.CPUPerCycleUs = float64(cpu.Microseconds()) / float64(n)
	}
	serverCPU := time.Duration(-1)
	if cfg.serverPID > 0 {
		first, last := samples[0], samples[len(samples)-2] // start, load end
		serverCPU = last.cpu - first.cpu
		rep.Server = &serverReport{PID: cfg.serverPID, CPUS: serverCPU.Seconds(), CPUPct: 100 * serverCPU.Seconds() / loadElapsed.Seconds()}
		if n := r.started.Load(); n > 0 {
			rep.Server.CPUPerCycleUs = serverCPU.Seconds() * 1e6 / float64(n)
		}
	}
	rep.Machine = newMachineReport(mach0, mach1, loadElapsed, cpu, serverCPU)
	rep.Inbound = a.inbound()
	return rep, nil
}

// sampleLabel names a periodic sample by when it was taken: "1m", "90s".
func sampleLabel(d time.Duration) string {
	d = d.Round(time.Second)
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// sample reads the server's RSS (with -server-pid), heap and goroutines
// (with -server-debug).
func (r *soakRun) sample(label string) soakSample {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := soakSample{Label: label, ElapsedS: time.Since(r.start).Seconds(), InFlight: r.inFlight.Load()}
	ss := r.probe.sample(ctx, label, 0)
	s.RSS, s.HeapInuse, s.HeapAlloc, s.Err, s.cpu = ss.RSS, ss.HeapInuse, ss.HeapAlloc, ss.Err, ss.CPU
	if r.probe.base != "" {
		n, err := r.probe.goroutines(ctx)
		if err != nil {
			s.Err = strings.TrimPrefix(s.Err+"; "+err.Error(), "; ")
		}
		s.Goroutines = n
	}
	return s
}

func (s soakSample) String() string {
	parts := []string{fmt.Sprintf("%-9s %7.1f s  %5d in flight", s.Label, s.ElapsedS, s.InFlight)}
	if s.RSS > 0 {
		parts = append(parts, "rss "+mb(s.RSS))
	}
	if s.HeapInuse > 0 {
		parts = append(parts, "heap in use "+mb(s.HeapInuse))
	}
	if s.Goroutines > 0 {
		parts = append(parts, fmt.Sprintf("%d goroutines", s.Goroutines))
	}
	if s.Err != "" {
		parts = append(parts, "("+s.Err+")")
	}
	return strings.Join(parts, ", ")
}

// soakReport sums the run up and gives the verdict.
func (r *soakRun) soakReport(samples []soakSample, backAfter time.Duration) *soakReport {
	cfg := r.cfg
	sr := &soakReport{
		Mix: cfg.mix.String(), PickupTimeout: cfg.pickupTimeout.Seconds(), RecallRing: cfg.recallRing.Seconds(), Attempts: cfg.attempts,
		Started: r.started.Load(), Failed: r.failed.Load(), OpenDialogs: r.dialogs.Load(),
		Samples: samples,
	}
	var outcomes uint64
	outcomes, sr.Outcomes = r.outcomes.snapshot()
	_, sr.Anomalies = r.anomalies.snapshot()
	sr.Unaccounted = int64(sr.Started) - int64(outcomes) - int64(sr.Failed)
	if h := r.refer.Snapshot(); h.Count() > 0 {
		l := latencyOf(h)
		sr.Refer = &l
	}
	if h := r.recallDelay.Snapshot(); h.Count() > 0 {
		l := latencyOf(h)
		sr.RecallDelay = &l
	}

	v := &sr.Verdict
	v.HeapLimitPct = heapLimitPct
	if backAfter >= 0 {
		s := backAfter.Seconds()
		v.GoroutinesBackAfterS = &s
	}
	v.Flat = true
	n := len(samples)
	start, idle := samples[0], samples[n-1]
	// The periodic samples, between "start" and "load end", are taken
	// under the same load: the last against the first, the warm-up done.
	if periodic := samples[1 : n-2]; len(periodic) >= 2 {
		ref, end := periodic[0], periodic[len(periodic)-1]
		if ref.HeapInuse > 0 && end.HeapInuse > 0 {
			g := 100 * (float64(end.HeapInuse) - float64(ref.HeapInuse)) / float64(ref.HeapInuse)
			flat := g <= heapLimitPct
			v.HeapRef, v.HeapEnd, v.HeapGrowthPct, v.HeapFlat = ref.Label, end.Label, &g, &flat
			v.Flat = v.Flat && flat
		}
	}
	if start.Goroutines > 0 && idle.Goroutines > 0 {
		back := idle.Goroutines <= start.Goroutines+goroutineSlack
		v.GoroutinesIdle, v.GoroutinesEnd, v.GoroutinesBack = start.Goroutines, idle.Goroutines, &back
		v.Flat = v.Flat && back
	}
	return sr
}

// writeText prints the soak's own lines.
func (sr *soakReport) writeText(p func(label, format string, args ...any)) {
	p("mix", "%s; server timeout %.0f s, recall ring %.0f s, %d attempt(s)", sr.Mix, sr.PickupTimeout, sr.RecallRing, sr.Attempts)
	var outcomes uint64
	for _, n := range sr.Outcomes {
		outcomes += n
	}
	p("calls", "%d started = %d with an outcome + %d failed; %d unaccounted; %d dialogs left open", sr.Started, outcomes, sr.Failed, sr.Unaccounted, sr.OpenDialogs)
	for _, k := range sortedByCount(sr.Outcomes) {
		p("  outcome", "%7d  %s", sr.Outcomes[k], k)
	}
	if len(sr.Anomalies) == 0 {
		p("anomalies", "none")
	}
	for _, k := range sortedByCount(sr.Anomalies) {
		p("  anomaly", "%7d  %s", sr.Anomalies[k], k)
	}
	if sr.Refer != nil {
		p("refer", "%s  (REFER → final NOTIFY)", *sr.Refer)
	}
	if sr.RecallDelay != nil {
		p("recall", "%s  (park → first recall INVITE)", *sr.RecallDelay)
	}
	for _, s := range sr.Samples {
		p("server", "%s", s)
	}
	v := sr.Verdict
	var parts []string
	if v.HeapFlat != nil {
		parts = append(parts, fmt.Sprintf("heap in use at %s %+.1f %% of %s (limit +%.0f %%): %s", v.HeapEnd, *v.HeapGrowthPct, v.HeapRef, v.HeapLimitPct, yesNo(*v.HeapFlat, "flat", "GROWING")))
	} else {
		parts = append(parts, "heap not judged (fewer than two periodic samples)")
	}
	if v.GoroutinesBack != nil {
		when := "never back while settling"
		if v.GoroutinesBackAfterS != nil {
			when = fmt.Sprintf("back %.1f s after the load", *v.GoroutinesBackAfterS)
		}
		parts = append(parts, fmt.Sprintf("goroutines %d at the start, %d idle (%s): %s", v.GoroutinesIdle, v.GoroutinesEnd, when, yesNo(*v.GoroutinesBack, "back", "NOT BACK")))
	}
	p("verdict", "%s; %s", yesNo(v.Flat, "FLAT", "NOT FLAT"), strings.Join(parts, "; "))
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func sortedByCount(m map[string]uint64) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}

// goroutines reads the server's goroutine count: the first line of
// /debug/pprof/goroutine?debug=1, "goroutine profile: total N".
func (p *serverProbe) goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	res, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("server goroutines: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("server goroutines: %s", res.Status)
	}
	n, err := parseGoroutineCount(res.Body)
	_, _ = io.Copy(io.Discard, res.Body) // the connection is reused
	return n, err
}

func parseGoroutineCount(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("server goroutines: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	n, perr := strconv.Atoi(rest)
	if !ok || perr != nil {
		return 0, fmt.Errorf("server goroutines: first line %q", line)
	}
	return n, nil
}

// soakWorker runs one call at a time. Its three RTP sockets serve every
// call: the parked party's, the retriever's and the parker's (a recall).
type soakWorker struct {
	r      *soakRun
	a      *agent
	rng    *rand.Rand
	open   map[*sipgo.DialogClientSession]bool // the call's dialogs not yet ended
	rtp    [3]*net.UDPConn
	offers [3][]byte
}

const (
	rtpParked = iota
	rtpRetriever
	rtpParker
)

func newSoakWorker(r *soakRun, id int, ports *rtpPorts) (*soakWorker, error) {
	w := &soakWorker{r: r, a: r.a, rng: rand.New(rand.NewPCG(uint64(id), rand.Uint64())), open: make(map[*sipgo.DialogClientSession]bool)}
	if err := openLegMedia(ports, r.cfg.local, w.rtp[:], w.offers[:]); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *soakWorker) startReaders() {
	for _, c := range w.rtp {
		go countPackets(c, &w.r.pkts)
	}
}

func (w *soakWorker) close() { closeLegMedia(w.rtp[:]) }

// run places calls until stop ends; the call under way is finished.
func (w *soakWorker) run(stop context.Context, pace *pacer) {
	for stop.Err() == nil {
		if pace != nil && !pace.wait(stop) {
			return
		}
		r := w.r
		r.started.Add(1)
		r.inFlight.Add(1)
		res := w.call(r.cfg.mix.pick(w.rng))
		for d := range w.open { // the tool's own slip: no path may leave one
			r.anomalies.add("tool left a dialog open")
			w.hangup(d)
		}
		if res.anomaly != "" {
			r.failed.Add(1)
			r.anomalies.add(res.anomaly)
		} else {
			r.outcomes.add(res.outcome)
		}
		r.inFlight.Add(-1)
	}
}

// call runs one scenario to its end.
func (w *soakWorker) call(kind soakKind) result {
	switch kind {
	case soakHangup:
		return w.hangupWhileParked()
	case soakRetrieve:
		return w.parkRetrieve()
	case soakRepark, soakReparkBye, soakReparkTimeout:
		return w.repark(kind == soakReparkTimeout, kind == soakReparkBye)
	default:
		return w.timeout()
	}
}

// soakCall is one call's dialogs; every one opened is ended or closed by
// the time the call's result is in.
type soakCall struct {
	parked *sipgo.DialogClientSession
	orbit  string
	at     time.Time // when the park was answered
}

// opened counts an established dialog, ended its end (once, however many
// paths of a scenario reach it).
func (w *soakWorker) opened(d *sipgo.DialogClientSession) {
	w.open[d] = true
	w.r.dialogs.Add(1)
}

func (w *soakWorker) ended(d *sipgo.DialogClientSession) {
	d.Close()
	if w.open[d] {
		delete(w.open, d)
		w.r.dialogs.Add(-1)
	}
}

// pause sleeps a random time below max: how long a party waits, talks or
// holds.
func (w *soakWorker) pause(max time.Duration) {
	if max > 0 {
		time.Sleep(time.Duration(w.rng.Int64N(int64(max))))
	}
}

// park parks the worker's caller on the park extension, naming parker
// (Referred-By) when it is not empty.
func (w *soakWorker) park(parker string) (*soakCall, result) {
	a := w.a
	var headers []sip.Header
	if parker != "" {
		headers = append(headers, sip.NewHeader("Referred-By", "<"+a.userURI(parker)+">"))
	}
	t0 := time.Now()
	d, res, err := a.invite(context.Background(), a.cfg.parkExt, w.offers[rtpParked], headers...)
	if err != nil {
		return nil, failErr("park", err)
	}
	w.r.park.Record(time.Since(t0))
	w.opened(d)
	c := &soakCall{parked: d, at: time.Now()}
	if h := res.GetHeader("X-Park-Orbit"); h != nil {
		c.orbit = h.Value()
	}
	if err := d.Ack(context.Background()); err != nil {
		w.ended(d)
		return nil, fail("park-ack", "transport")
	}
	if c.orbit == "" {
		w.hangup(d)
		return nil, fail("park", "no X-Park-Orbit")
	}
	return c, result{}
}

// retrieve calls orbit from the retriever's socket.
func (w *soakWorker) retrieve(orbit string) (*sipgo.DialogClientSession, error) {
	t0 := time.Now()
	d, _, err := w.a.invite(context.Background(), orbit, w.offers[rtpRetriever])
	if err != nil {
		return nil, err
	}
	w.r.retrieve.Record(time.Since(t0))
	w.opened(d)
	if err := d.Ack(context.Background()); err != nil {
		w.ended(d)
		return nil, err
	}
	return d, nil
}

// bye hangs up d from our side; the dialog is ended either way.
func (w *soakWorker) bye(d *sipgo.DialogClientSession) error {
	err := w.a.bye(context.Background(), d)
	w.ended(d)
	return err
}

// hangup ends a call the scenario gave up on; its failure is not counted
// again.
func (w *soakWorker) hangup(d *sipgo.DialogClientSession) {
	if d.Context().Err() != nil {
		w.ended(d)
		return
	}
	_ = w.bye(d)
}

// waitEnded waits for the server's BYE on d, at most -timeout.
func (w *soakWorker) waitEnded(d *sipgo.DialogClientSession) bool {
	t := time.NewTimer(w.a.cfg.timeout)
	defer t.Stop()
	select {
	case <-d.Context().Done():
		w.ended(d)
		return true
	case <-t.C:
		return false
	}
}

// stillUp reports whether d has not been ended by the server.
func stillUp(d *sipgo.DialogClientSession) bool { return d.Context().Err() == nil }

// hangupWhileParked: park, wait, the parked party hangs up.
func (w *soakWorker) hangupWhileParked() result {
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(2 * time.Second)
	if !stillUp(c.parked) {
		w.ended(c.parked)
		return fail("parked", "hung up by the server")
	}
	if err := w.bye(c.parked); err != nil {
		return failErr("parked-bye", err)
	}
	return done("abandoned (the parked party hung up)")
}

// parkRetrieve: park, retrieve, talk, one side hangs up and the server
// passes the BYE on.
func (w *soakWorker) parkRetrieve() result {
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(time.Second)
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve", err)
	}
	w.pause(time.Second)
	return w.endBridged(got, c.parked, "retrieved")
}

// endBridged hangs up one of two bridged calls at random and checks the
// server's BYE reaches the other.
func (w *soakWorker) endBridged(ours, parked *sipgo.DialogClientSession, what string) result {
	first, other, who := ours, parked, "the retriever"
	if w.rng.IntN(2) == 0 {
		first, other, who = parked, ours, "the parked party"
	}
	if !stillUp(first) || !stillUp(other) {
		w.hangup(first)
		w.hangup(other)
		return fail(what, "call ended by the server before either side hung up")
	}
	if err := w.bye(first); err != nil {
		w.hangup(other)
		return failErr(what+"-bye", err)
	}
	if !w.waitEnded(other) {
		w.hangup(other)
		return fail(what, "the server's BYE to the other side never came")
	}
	return done(what + ", " + who + " hung up")
}

// repark: park, retrieve, REFER the parked party to the park extension,
// the referrer hangs up (right after the 202, or after the final NOTIFY);
// then the new orbit is retrieved, or left to time out.
func (w *soakWorker) repark(timeout, byeAtOnce bool) result {
	box := w.expectRecalls()
	defer box.close()
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(500 * time.Millisecond)
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve", err)
	}
	w.pause(500 * time.Millisecond)

	orbit, res := w.referToPark(got, box.parker, byeAtOnce)
	if orbit == "" {
		w.hangup(got)
		w.hangup(c.parked)
		return res
	}
	c.orbit, c.at = orbit, time.Now()
	if !byeAtOnce {
		if err := w.bye(got); err != nil {
			w.hangup(c.parked)
			return failErr("referrer-bye", err)
		}
	}
	prefix := "re-parked (referrer hung up after the final NOTIFY), "
	if byeAtOnce {
		prefix = "re-parked (referrer hung up right after the 202), "
	}
	// The re-parked party stays: the referrer's BYE must not reach it.
	time.Sleep(50 * time.Millisecond)
	if !stillUp(c.parked) {
		w.ended(c.parked)
		return fail(strings.TrimSuffix(prefix, ", "), "the parked party was hung up by the server")
	}
	if timeout {
		return w.awaitRecalls(c, box, prefix)
	}
	w.pause(time.Second)
	again, err := w.retrieve(orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve-reparked", err)
	}
	w.pause(500 * time.Millisecond)
	return w.endBridged(again, c.parked, prefix+"retrieved")
}

// referToPark sends REFER to the park extension in d, with the parker as
// Referred-By, and waits for the final NOTIFY: the new orbit, or a failed
// result. With byeAtOnce the referrer hangs up right after the 202.
func (w *soakWorker) referToPark(d *sipgo.DialogClientSession, parker string, byeAtOnce bool) (string, result) {
	a := w.a
	frags := make(chan sipfrag, 4)
	callID := d.InviteRequest.CallID().Value()
	a.notifies.Store(callID, func(req *sip.Request) {
		if ev := req.GetHeader("Event"); ev == nil || !strings.HasPrefix(strings.TrimSpace(ev.Value()), "refer") {
			return
		}
		f := parseSipfrag(req.Body())
		if st := req.GetHeader("Subscription-State"); st != nil && strings.HasPrefix(strings.TrimSpace(st.Value()), "terminated") {
			f.final = true
		}
		select {
		case frags <- f:
		default:
		}
	})
	defer a.notifies.Delete(callID)

	target := d.InviteRequest.Recipient
	if c := d.InviteResponse.Contact(); c != nil {
		target = c.Address
	}
	req := sip.NewRequest(sip.REFER, *target.Clone())
	parkURI := a.uri(a.cfg.parkExt)
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+parkURI.String()+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+a.userURI(parker)+">"))
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
	defer cancel()
	t0 := time.Now()
	res, err := d.Do(ctx, req)
	if err != nil {
		return "", failErr("refer", err)
	}
	if res.StatusCode != sip.StatusAccepted {
		return "", fail("refer", strconv.Itoa(res.StatusCode))
	}
	if byeAtOnce {
		if err := w.bye(d); err != nil {
			return "", failErr("referrer-bye", err)
		}
	}
	for {
		select {
		case f := <-frags:
			if !f.final {
				continue
			}
			w.r.refer.Record(time.Since(t0))
			if f.code != sip.StatusOK {
				return "", fail("refer-notify", strconv.Itoa(f.code))
			}
			if f.orbit == "" {
				return "", fail("refer-notify", "no X-Park-Orbit")
			}
			return f.orbit, result{}
		case <-ctx.Done():
			return "", fail("refer-notify", "timeout")
		}
	}
}

// sipfrag is what soak mode reads of a REFER NOTIFY.
type sipfrag struct {
	code  int
	orbit string
	final bool
}

func parseSipfrag(body []byte) sipfrag {
	var f sipfrag
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	if fs := strings.Fields(lines[0]); len(fs) >= 2 {
		f.code, _ = strconv.Atoi(fs[1])
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "X-Park-Orbit") {
			f.orbit = strings.TrimSpace(v)
		}
	}
	return f
}

// timeout: park naming the worker as the parker, let the pickup timeout
// run out, and handle the recalls.
func (w *soakWorker) timeout() result {
	box := w.expectRecalls()
	defer box.close()
	c, res := w.park(box.parker)
	if c == nil {
		return res
	}
	return w.awaitRecalls(c, box, "")
}

// recallChoice is what the parker does with one recall.
type recallChoice int

const (
	recallAnswer   recallChoice = iota // 180, then 200 after a moment; talk; hang up
	recallRefuse                       // 486 Busy Here
	recallIgnore                       // let it ring until the server CANCELs
	recallRetrieve                     // let it ring and retrieve the orbit meanwhile: the retrieve wins
)

// recallEvent is what the worker hears of a recall.
type recallEvent struct {
	choice recallChoice
	at     time.Time
	orbit  string                     // the recall's From user
	sess   *sipgo.DialogServerSession // answered
	err    error                      // the answer failed
}

// recallBox receives the recalls of one call: the agent hands every INVITE
// to its parker URI to serve, in sipgo's handler goroutine.
type recallBox struct {
	w      *soakWorker
	parker string
	events chan recallEvent

	mu     sync.Mutex
	closed bool
}

func (w *soakWorker) expectRecalls() *recallBox {
	b := &recallBox{w: w, parker: fmt.Sprintf("parker%d", w.r.seq.Add(1)), events: make(chan recallEvent, 16)}
	w.a.recalls.Store(b.parker, b.serve)
	return b
}

// close stops taking recalls; an answered one the worker never took is
// hung up.
func (b *recallBox) close() {
	b.w.a.recalls.Delete(b.parker)
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for {
		select {
		case ev := <-b.events:
			if ev.sess != nil {
				b.w.r.anomalies.add("recall answered but never taken")
				_ = b.w.r.hangupRecall(ev.sess)
			}
		default:
			return
		}
	}
}

// deliver passes ev to the worker, or reports false once the call is over.
func (b *recallBox) deliver(ev recallEvent) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.events <- ev // 16 deep; a call sees at most -attempts (≤ 10) recalls
	return true
}

// hangupRecall ends an answered recall from the parker's side.
func (r *soakRun) hangupRecall(sess *sipgo.DialogServerSession) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.timeout)
	defer cancel()
	err := sess.Bye(ctx)
	sess.Close()
	r.dialogs.Add(-1)
	return err
}

// serve answers one recall INVITE as the worker's choice says. It runs in
// sipgo's handler goroutine, which must not return before the final
// answer (sipgo ends an unanswered transaction then).
func (b *recallBox) serve(req *sip.Request, tx sip.ServerTransaction) {
	r := b.w.r
	cfg := r.cfg
	ev := recallEvent{at: time.Now(), choice: recallChoice(rand.IntN(4))}
	if from := req.From(); from != nil {
		ev.orbit = from.Address.User
	}
	respond := func(code int, reason string) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
	}
	// The choices that end the recall without our 2xx are told to the
	// worker first: the server's BYE to the parked party, which follows,
	// may arrive before this handler goes on.
	switch ev.choice {
	case recallRefuse:
		if !b.deliver(ev) {
			r.anomalies.add("recall after its call ended")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		respond(sip.StatusBusyHere, "Busy Here")
		awaitAck(tx, cfg.timeout)
		return
	case recallIgnore, recallRetrieve:
		// sipgo answers the CANCEL and the INVITE (487) itself; the
		// transaction then lingers (Timer I), so the CANCEL is watched
		// for, not the end of the transaction.
		cancelled := make(chan struct{})
		var once sync.Once
		if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
			return // the transaction ended already
		}
		respond(sip.StatusRinging, "Ringing")
		if !b.deliver(ev) {
			r.anomalies.add("recall after its call ended")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
			return
		}
		t := time.NewTimer(cfg.recallRing + cfg.timeout)
		defer t.Stop()
		select {
		case <-cancelled: // the ring ran out, or a retrieve won
			awaitAck(tx, cfg.timeout) // of the 487
		case <-tx.Done():
		case <-t.C:
			what := "ignored"
			if ev.choice == recallRetrieve {
				what = "retrieved meanwhile"
			}
			r.anomalies.add("recall never cancelled (" + what + ")")
			respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		}
		return
	}
	// recallAnswer.
	respond(sip.StatusRinging, "Ringing")
	time.Sleep(time.Duration(rand.Int64N(int64(min(cfg.recallRing/2, 300*time.Millisecond)))))
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		r.anomalies.add("recall after its call ended")
		respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		return
	}
	sess, err := b.w.a.answered.ReadInvite(req, tx)
	if err != nil {
		ev.err = err
		respond(sip.StatusBadRequest, "Bad Request")
	} else if err := sess.RespondSDP(b.w.offers[rtpParker]); err != nil { // returns once the ACK is in
		ev.err = err
		sess.Close()
	} else {
		ev.sess = sess
		r.dialogs.Add(1)
	}
	if !b.deliver(ev) {
		if ev.sess != nil {
			r.anomalies.add("recall answered after its call ended")
			_ = r.hangupRecall(ev.sess)
		}
	}
}

// awaitAck waits for the ACK of a final non-2xx answer: sipgo hands it to
// whoever reads tx.Acks(), and with nobody reading it parks a goroutine
// until the transaction ends (Timer I, 5 s).
func awaitAck(tx sip.ServerTransaction, limit time.Duration) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-tx.Acks():
	case <-tx.Done():
	case <-t.C:
	}
}

// awaitRecalls waits, as the parker, for the recalls of c until the call
// ends: the worker's choice for each recall decides how.
func (w *soakWorker) awaitRecalls(c *soakCall, box *recallBox, prefix string) result {
	cfg := w.r.cfg
	limit := cfg.pickupTimeout + time.Duration(cfg.attempts)*(cfg.recallRing+2*cfg.timeout) + cfg.timeout
	deadline := time.NewTimer(limit - time.Since(c.at))
	defer deadline.Stop()
	last := ""
	recalls := 0
	for {
		select {
		case ev := <-box.events:
			if recalls++; recalls == 1 {
				w.r.recallDelay.Record(ev.at.Sub(c.at))
			}
			if recalls > cfg.attempts {
				w.r.anomalies.add("recall more than -attempts times")
			}
			if ev.orbit != c.orbit {
				w.r.anomalies.add("recall from another orbit than the call's")
			}
			switch ev.choice {
			case recallRefuse:
				last = "recall refused (486)"
			case recallIgnore:
				last = "recall rang out (CANCEL)"
			case recallRetrieve:
				return w.retrieveDuringRecall(c, prefix)
			case recallAnswer:
				if ev.err != nil {
					w.hangup(c.parked)
					return fail("recall-answer", ev.err.Error())
				}
				return w.talkToRecall(c, ev.sess, prefix)
			}
		case <-c.parked.Context().Done():
			// The server ended the call after the last recall: take in a
			// recall it may have been about.
			select {
			case ev := <-box.events:
				if ev.choice == recallRefuse {
					last = "recall refused (486)"
				} else if ev.choice == recallIgnore {
					last = "recall rang out (CANCEL)"
				}
			default:
			}
			w.ended(c.parked)
			if last == "" {
				return fail(prefix+"parked", "hung up by the server before any recall")
			}
			return done(prefix + "timed out, " + last + ", the server hung up")
		case <-deadline.C:
			w.hangup(c.parked)
			return fail("recall", "the call never ended")
		}
	}
}

// talkToRecall: the parker answered; talk, hang up, and the server passes
// the BYE on to the parked party.
func (w *soakWorker) talkToRecall(c *soakCall, sess *sipgo.DialogServerSession, prefix string) result {
	w.pause(500 * time.Millisecond)
	if err := w.r.hangupRecall(sess); err != nil {
		w.hangup(c.parked)
		return failErr("recall-bye", err)
	}
	if !w.waitEnded(c.parked) {
		w.hangup(c.parked)
		return fail("recall", "the server's BYE to the parked party never came")
	}
	return done(prefix + "timed out, recall answered, the parker hung up")
}

// retrieveDuringRecall: while the recall rings, the orbit is retrieved; the
// retrieve wins and the recall is cancelled.
func (w *soakWorker) retrieveDuringRecall(c *soakCall, prefix string) result {
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve-during-recall", err)
	}
	w.pause(500 * time.Millisecond)
	return w.endBridged(got, c.parked, prefix+"timed out, retrieved while the recall rang")
}
