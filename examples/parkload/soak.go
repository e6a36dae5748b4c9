package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Soak mode: -workers workers loop for -duration over a random mix of
// scenarios, each one call from park to its end, while the server's heap,
// RSS and goroutines are sampled every -sample-every. Every call ends with
// an outcome (how it ended, as the contract says it may) or an anomaly
// (where it went wrong: an unexpected status, a call the server never
// ended); the report counts both, and the samples show whether the server
// stays flat.

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
