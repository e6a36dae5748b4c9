package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// report is what a run found: printed for people, or as one JSON object
// with -json. Durations are in milliseconds, sizes in bytes, rates per
// second, CPU in seconds and in percent of one core.
type report struct {
	Mode      string  `json:"mode"`
	Target    string  `json:"target"`
	Transport string  `json:"transport"`
	Workers   int     `json:"workers,omitempty"`
	Calls     int     `json:"calls,omitempty"`
	ElapsedS  float64 `json:"elapsed_s"`

	Cycles       uint64  `json:"cycles,omitempty"`
	CyclesPerSec float64 `json:"cycles_per_s,omitempty"`
	// The slowest and fastest whole second of the run.
	CyclesPerSecMin float64 `json:"cycles_per_s_min,omitempty"`
	CyclesPerSecMax float64 `json:"cycles_per_s_max,omitempty"`
	Parked          int     `json:"parked,omitempty"`
	// EndedByServer counts held calls the server hung up before the tool did.
	EndedByServer int `json:"ended_by_server,omitempty"`

	Failures   uint64            `json:"failures"`
	FailuresBy map[string]uint64 `json:"failures_by"`

	Park      latency  `json:"park"`
	Retrieve  *latency `json:"retrieve,omitempty"`
	Bye       latency  `json:"bye"`
	ServerBye *latency `json:"server_bye,omitempty"`

	RTP     rtpReport      `json:"rtp"`
	Tool    toolReport     `json:"tool"`
	Server  *serverReport  `json:"server,omitempty"`
	Machine *machineReport `json:"machine,omitempty"`
	Inbound inbound        `json:"inbound"`
	// HungUpAtEnd counts the calls the run left connected (a BYE that
	// failed, a step cut short, an answer after the tool gave up) that the
	// tool hung up once it stopped.
	HungUpAtEnd uint64 `json:"hung_up_at_end"`

	Soak *soakReport `json:"soak,omitempty"`
}

// latency summarises a histogram.
type latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func latencyOf(h *Histogram) latency {
	return latency{
		Count: h.Count(), Mean: ms(h.Mean()),
		P50: ms(h.Quantile(0.50)), P95: ms(h.Quantile(0.95)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()),
	}
}

type rtpReport struct {
	Received uint64 `json:"received"`
	// Hold mode only: the measurement window and what it should hold.
	WindowS          float64   `json:"window_s,omitempty"`
	Expected         uint64    `json:"expected,omitempty"`
	ReceivedPct      float64   `json:"received_pct,omitempty"`
	SeqLost          uint64    `json:"seq_lost,omitempty"`
	CallsSilent      int       `json:"calls_silent,omitempty"`
	WorstCallPct     float64   `json:"worst_call_pct,omitempty"`
	PerSecondPct     []float64 `json:"per_second_pct,omitempty"` // each whole second of the window
	MaxGapMs         float64   `json:"max_gap_ms,omitempty"`
	Jitter           *latency  `json:"jitter,omitempty"`       // |inter-arrival − 20 ms|
	FirstPacket      *latency  `json:"first_packet,omitempty"` // ACK → first packet of music
	BeforeAck        int       `json:"before_ack,omitempty"`   // calls whose music began before the ACK
	KernelTimestamps bool      `json:"kernel_timestamps,omitempty"`
	Receiver         string    `json:"receiver,omitempty"` // what read the music: rxRing or rxSockets
	// ToolDropped: datagrams the tool's own receiver lost (its ring was
	// full): the tool's overload, counted as missing above but not the
	// server's doing.
	ToolDropped uint64 `json:"tool_dropped,omitempty"`
}

type toolReport struct {
	CPUS   float64 `json:"cpu_s"`
	CPUPct float64 `json:"cpu_pct"`
	// Per cycle (cycle mode) or per parked call-second of the window (hold).
	CPUPerCycleUs   float64 `json:"cpu_per_cycle_us,omitempty"`
	WindowCPUPct    float64 `json:"window_cpu_pct,omitempty"`
	CPUPerCallSecUs float64 `json:"cpu_per_call_s_us,omitempty"`
	MaxRSS          uint64  `json:"max_rss_bytes"`
	Goroutines      int     `json:"goroutines_peak,omitempty"`
}

// machineReport is the whole machine's CPU over the run (cycle mode) or
// the window (hold mode), in cores: what the tool and the server did not
// use themselves was some other program's, which on a shared machine
// explains a slow run.
type machineReport struct {
	Cores      int     `json:"cores"`
	BusyCores  float64 `json:"busy_cores"`
	OtherCores float64 `json:"other_cores,omitempty"` // busy − tool − server (with -server-pid)
}

// newMachineReport compares two /proc/stat samples taken wall apart, during
// which the tool used tool and the server server (-1: unknown) CPU.
func newMachineReport(a, b machineSample, wall, tool, server time.Duration) *machineReport {
	busy := machineCores(a, b, wall)
	if busy == 0 {
		return nil
	}
	m := &machineReport{Cores: runtime.NumCPU(), BusyCores: math.Round(busy*100) / 100}
	if server >= 0 {
		m.OtherCores = math.Round(max(busy-(tool+server).Seconds()/wall.Seconds(), 0)*100) / 100
	}
	return m
}

type serverReport struct {
	PID             int            `json:"pid,omitempty"`
	CPUS            float64        `json:"cpu_s,omitempty"`
	CPUPct          float64        `json:"cpu_pct,omitempty"`
	CPUPerCycleUs   float64        `json:"cpu_per_cycle_us,omitempty"`
	WindowCPUPct    float64        `json:"window_cpu_pct,omitempty"`
	CPUPerCallSecUs float64        `json:"cpu_per_call_s_us,omitempty"`
	HeapPerCall     float64        `json:"heap_per_call_bytes,omitempty"`
	RSSPerCall      float64        `json:"rss_per_call_bytes,omitempty"`
	Samples         []serverSample `json:"samples"`
}

// failures counts failed steps by "step kind" (such as "park 486",
// "retrieve timeout"), safe for the workers to share.
type failures struct {
	mu sync.Mutex
	by map[string]uint64
	n  uint64
}

func (f *failures) add(step, kind string) {
	f.mu.Lock()
	if f.by == nil {
		f.by = make(map[string]uint64)
	}
	f.by[step+" "+kind]++
	f.n++
	f.mu.Unlock()
}

func (f *failures) total() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *failures) snapshot() (uint64, map[string]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	by := make(map[string]uint64, len(f.by))
	maps.Copy(by, f.by)
	return f.n, by
}

// fillServer derives the server's figures from its samples: CPU over the
// run (first to last sample) and, for hold mode, per parked call.
func fillServer(r *report, pid int, samples []serverSample) {
	if len(samples) == 0 {
		return
	}
	s := &serverReport{PID: pid, Samples: samples}
	first, last := samples[0], samples[len(samples)-1]
	if pid > 0 {
		cpu := last.CPU - first.CPU
		s.CPUS = cpu.Seconds()
		if wall := last.At.Sub(first.At); wall > 0 {
			s.CPUPct = 100 * cpu.Seconds() / wall.Seconds()
		}
	}
	r.Server = s
}

// heapPerCall compares the sample at 0 parked calls with the one with the
// most: the growth divided by the calls.
func heapPerCall(s *serverReport) {
	var zero, top *serverSample
	for i := range s.Samples {
		x := &s.Samples[i]
		if x.Err != "" && x.RSS == 0 && x.HeapInuse == 0 {
			continue
		}
		if x.Parked == 0 && zero == nil {
			zero = x
		}
		if top == nil || x.Parked > top.Parked {
			top = x
		}
	}
	if zero == nil || top == nil || top.Parked == 0 {
		return
	}
	n := float64(top.Parked)
	if zero.HeapInuse > 0 && top.HeapInuse > 0 {
		s.HeapPerCall = (float64(top.HeapInuse) - float64(zero.HeapInuse)) / n
	}
	if zero.RSS > 0 && top.RSS > 0 {
		s.RSSPerCall = (float64(top.RSS) - float64(zero.RSS)) / n
	}
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

func (l latency) String() string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.2f  p95 %.2f  p99 %.2f  max %.2f ms  (n=%d)", l.P50, l.P95, l.P99, l.Max, l.Count)
}

// writeText prints the report for people.
func (r *report) writeText(w io.Writer) {
	p := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-14s %s\n", label, fmt.Sprintf(format, args...))
	}
	switch r.Mode {
	case "cycle":
		p("run", "cycle mode against %s (%s), %d workers, %.1f s", r.Target, r.Transport, r.Workers, r.ElapsedS)
		p("cycles", "%d = %.1f/s (park → retrieve → BYE → server's BYE)", r.Cycles, r.CyclesPerSec)
		if r.CyclesPerSecMax > 0 {
			p("per second", "slowest %.0f, fastest %.0f cycles", r.CyclesPerSecMin, r.CyclesPerSecMax)
		}
	case "hold":
		p("run", "hold mode against %s (%s), %d calls, %.1f s", r.Target, r.Transport, r.Calls, r.ElapsedS)
		p("parked", "%d of %d held through the window; %d ended by the server early", r.Parked, r.Calls, r.EndedByServer)
	case "soak":
		p("run", "soak mode against %s (%s), %d workers, %.1f s", r.Target, r.Transport, r.Workers, r.ElapsedS)
		p("started", "%d calls = %.1f/s over -duration (the calls under way then ran to their end)", r.Cycles, r.CyclesPerSec)
		r.Soak.writeText(p)
	}
	switch {
	case r.Mode == "soak": // its anomalies are listed above
	case r.Failures == 0:
		p("failures", "0")
	default:
		keys := slices.SortedFunc(maps.Keys(r.FailuresBy), func(a, b string) int {
			return cmp.Or(cmp.Compare(r.FailuresBy[b], r.FailuresBy[a]), strings.Compare(a, b))
		})
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s: %d", k, r.FailuresBy[k]))
		}
		p("failures", "%d (%s)", r.Failures, strings.Join(parts, ", "))
	}
	p("park", "%s", r.Park)
	if r.Retrieve != nil {
		p("retrieve", "%s", *r.Retrieve)
	}
	if r.Mode != "soak" {
		p("bye", "%s", r.Bye)
	}
	if r.ServerBye != nil {
		p("server bye", "%s  (our BYE of the retriever → its BYE of the parked call)", *r.ServerBye)
	}
	if r.Mode == "cycle" || r.Mode == "soak" {
		p("rtp", "%d packets received (music while parked; no expectation in %s mode)", r.RTP.Received, r.Mode)
	} else {
		x := r.RTP
		p("rtp", "%d of %d expected in the %.1f s window = %.3f %%; %d lost by sequence; %d calls silent; worst call %.2f %%",
			x.Received, x.Expected, x.WindowS, x.ReceivedPct, x.SeqLost, x.CallsSilent, x.WorstCallPct)
		if x.ToolDropped > 0 {
			p("tool drops", "%d datagrams dropped by the tool's own receiver (its ring was full): the tool fell behind, not the server", x.ToolDropped)
		}
		if n := len(x.PerSecondPct); n > 0 {
			p("per second", "first %.2f %%, last %.2f %%, lowest %.2f %%, highest %.2f %% of the packets due",
				x.PerSecondPct[0], x.PerSecondPct[n-1], slices.Min(x.PerSecondPct), slices.Max(x.PerSecondPct))
		}
		if x.Jitter != nil {
			clock := "tool clock"
			if x.KernelTimestamps {
				clock = "kernel timestamps"
			}
			if x.Receiver != "" {
				clock += ", read from the " + x.Receiver
			}
			p("jitter", "|Δ − 20 ms| p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms; longest gap %.1f ms (%s)",
				x.Jitter.P50, x.Jitter.P99, x.Jitter.P999, x.Jitter.Max, x.MaxGapMs, clock)
		}
		if x.FirstPacket != nil {
			p("music start", "ACK → first packet %s; %d calls had music before the ACK", *x.FirstPacket, x.BeforeAck)
		}
	}
	t := r.Tool
	switch r.Mode {
	case "cycle":
		p("tool cpu", "%.2f s = %.0f %% of a core = %.0f µs/cycle; max RSS %s", t.CPUS, t.CPUPct, t.CPUPerCycleUs, mb(t.MaxRSS))
	case "soak":
		p("tool cpu", "%.2f s = %.0f %% of a core = %.0f µs/call; max RSS %s", t.CPUS, t.CPUPct, t.CPUPerCycleUs, mb(t.MaxRSS))
	case "hold":
		p("tool cpu", "%.2f s = %.0f %% of a core over the run; %.1f %% in the window = %.1f µs per call-second; max RSS %s",
			t.CPUS, t.CPUPct, t.WindowCPUPct, t.CPUPerCallSecUs, mb(t.MaxRSS))
	}
	if s := r.Server; s != nil {
		if s.PID > 0 {
			switch r.Mode {
			case "cycle":
				p("server cpu", "%.2f s = %.0f %% of a core = %.0f µs/cycle", s.CPUS, s.CPUPct, s.CPUPerCycleUs)
			case "soak":
				p("server cpu", "%.2f s = %.0f %% of a core = %.0f µs/call (start to load end)", s.CPUS, s.CPUPct, s.CPUPerCycleUs)
			case "hold":
				p("server cpu", "%.2f s = %.0f %% of a core over the run; %.1f %% in the window = %.1f µs per call-second",
					s.CPUS, s.CPUPct, s.WindowCPUPct, s.CPUPerCallSecUs)
			}
		}
		for _, x := range s.Samples {
			var parts []string
			if x.RSS > 0 {
				parts = append(parts, "rss "+mb(x.RSS))
			}
			if x.HeapInuse > 0 {
				parts = append(parts, "heap in use "+mb(x.HeapInuse))
			}
			if x.Err != "" {
				parts = append(parts, "("+x.Err+")")
			}
			p("server", "%-10s %5d parked  %s", x.Label, x.Parked, strings.Join(parts, ", "))
		}
		var per []string
		if s.HeapPerCall != 0 {
			per = append(per, fmt.Sprintf("heap %+.0f B", s.HeapPerCall))
		}
		if s.RSSPerCall != 0 {
			per = append(per, fmt.Sprintf("rss %+.0f B", s.RSSPerCall))
		}
		if len(per) > 0 {
			p("server/call", "%s per parked call (the sample with 0 parked against the one with the most)", strings.Join(per, ", "))
		}
	}
	if m := r.Machine; m != nil {
		what := "the run"
		if r.Mode == "hold" {
			what = "the window"
		}
		if r.Server != nil && r.Server.PID > 0 {
			p("machine", "%.2f of %d cores busy over %s; %.2f of them neither the tool's nor the server's", m.BusyCores, m.Cores, what, m.OtherCores)
		} else {
			p("machine", "%.2f of %d cores busy over %s", m.BusyCores, m.Cores, what)
		}
	}
	in := r.Inbound
	p("from server", "BYE %d (%d for no dialog), re-INVITE %d, INVITE %d, OPTIONS %d, NOTIFY %d, MESSAGE %d, other %d; stray responses %d",
		in.Bye, in.ByeNoDialog, in.ReInvite, in.Invite, in.Options, in.Notify, in.Message, in.Other, in.StrayResponses)
	if r.HungUpAtEnd > 0 {
		p("hung up at end", "%d calls the run left connected", r.HungUpAtEnd)
	}
}
