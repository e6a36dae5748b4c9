// Command parkload is the load generator for a call park server that keeps
// the contract of docs/SIP-CONTRACT.md (issues 5 and 6). It drives the server over
// SIP with sipgo and measures what a PBX and its phones would see, and what
// the run cost both processes.
//
// # README
//
// Start a server, then the tool (both on this machine is fine; the tool
// reports its own CPU so a run shows whether it was the bottleneck):
//
//	go build -o /tmp/parkserver ./examples/parkserver
//	/tmp/parkserver -listen 127.0.0.1:5070 -timeout 10m -orbits 701-799,10000-19999 \
//	    -log-level warn -pprof 127.0.0.1:6060 &
//	go run ./examples/parkload -target 127.0.0.1:5070 -workers 50 -duration 60s \
//	    -server-pid $(pgrep -f /tmp/parkserver) -server-debug http://127.0.0.1:6060
//	go run ./examples/parkload -target 127.0.0.1:5070 -mode hold -calls 2000 -hold 30s \
//	    -server-pid $(pgrep -f /tmp/parkserver) -server-debug http://127.0.0.1:6060 \
//	    -checkpoints 0,1000,2000
//
// Cycle mode (the default) runs -workers workers, each with one call at a
// time, for -duration. A cycle is: INVITE sip:<park-ext>@target with an SDP
// offer, 200 OK with X-Park-Orbit (the park latency), ACK; INVITE the orbit
// from a second call (the retrieve latency), ACK; BYE the retriever (the
// BYE latency); then the server's BYE to the parked call (the server-BYE
// latency, counted from our BYE). The server's re-INVITE that gives the
// parked call two-way audio is answered with the call's own SDP, at once
// or -reinvite-delay later (a phone whose answer is lost and resent): the
// server's BYE must not wait for that answer. Whatever a run leaves
// connected when it stops (a step cut short, an answer that came after
// -timeout) is hung up before the report (hung_up_at_end).
//
// Hold mode parks -calls calls at -rate calls per second, each from its own
// RTP port; with -checkpoints it pauses at those parked-call counts (~1 s)
// to sample the server's RSS and heap, from which it derives the memory per
// parked call. Once every call is parked it waits -warmup, then for -hold
// counts the music of every call against one 20 ms G.711 packet expected
// per call, and records |inter-arrival − 20 ms| between consecutive packets
// (the jitter) and the time from ACK to the first packet; then it BYEs every
// call at -rate and checks each got 200. The server needs an orbit per call
// (its -orbits) and a pickup timeout longer than the run (its -timeout).
// Arrival times are the kernel's. -rx says what reads them: "sockets" reads
// every call's socket, as the phones would (one epoll set, one recvmsg per
// packet: at 5,000 calls about 0.7 of a core, on the cores the server needs);
// "ring" counts the datagrams to the calls' ports from one packet ring in
// shared memory (TPACKET_V3, Linux, CAP_NET_RAW, IPv4) and leaves the
// sockets unread, which takes the tool's cost off the measurement (about
// 0.06 of a core at 5,000 calls); "auto", the default, is the ring where it
// can be opened.
//
// Soak mode runs -workers workers for -duration (at most -cycle-rate calls
// started a second in all), each looping over a random mix (-mix weights)
// of: park → retrieve → one side hangs up (retrieve); park → the parked
// party hangs up (hangup); park → retrieve → REFER back to the park
// extension → the referrer hangs up after the final NOTIFY (repark) or
// right after the 202 (repark-bye) → retrieve the new orbit; the same left
// to time out (repark-timeout); and park naming the worker as the parker
// (Referred-By) and left to time out (timeout). The tool serves the
// server's recalls to that parker and, at random, answers them (then hangs
// up), refuses them 486, lets them ring until the server's CANCEL, or
// retrieves the orbit while they ring. The workers' first calls take the
// mix's scenarios in turn, so a short run with as many workers as
// scenarios tries each. -pickup-timeout, -recall-ring and
// -attempts repeat the server's settings, to bound the waits. Every call
// ends with an outcome, or an anomaly (an unexpected status, a call the
// server never ended, the server hanging up a party it should not), and
// both are counted by kind; a run checks that started = outcomes + failed.
// With -server-debug the server's heap and goroutine count (and RSS with
// -server-pid) are sampled at the start, every -sample-every, at the end
// of the load, and -settle later ("idle"). The verdict is flat when the
// heap in use in the last periodic sample is within +25 % of the first
// (both under load), and the goroutines are back to the start count (+ 2,
// the probe's own connection) in the idle sample.
//
//	/tmp/parkserver -listen 127.0.0.1:5080 -rtp-ports 30000-39999 -timeout 10s -recall-ring 2s \
//	    -orbits 701-799,10000-19999 -pprof 127.0.0.1:6070 -log-level warn &
//	go run ./examples/parkload -target 127.0.0.1:5080 -mode soak -workers 1000 -duration 10m \
//	    -cycle-rate 100 -server-pid $(pgrep -f /tmp/parkserver) -server-debug http://127.0.0.1:6070
//
// Flags: -target host:port, -transport udp|tcp, -mode cycle|hold|soak,
// -workers and -duration (cycle, soak), -calls, -hold, -rate, -warmup,
// -checkpoints and -rx (hold), -mix, -pickup-timeout, -recall-ring, -attempts,
// -sample-every and -settle (soak), -park-ext, -local (the IP for SIP and RTP),
// -rtp-ports (even ports are used), -timeout (per request, and for the
// server's BYE), -server-pid (CPU and RSS from /proc), -server-debug (the
// server's pprof base URL: HeapInuse after a forced GC), -json, -progress,
// -cpuprofile, -v (sipgo warnings). A flag of the other mode is refused.
//
// The report (with -json, one object with the same fields):
//
//	run            cycle mode against 127.0.0.1:5070 (udp), 50 workers, 20.0 s
//	cycles         21102 = 1054.3/s (park → retrieve → BYE → server's BYE)
//	per second     slowest 309, fastest 1482 cycles
//	failures       0
//	park           p50 9.44  p95 28.57  p99 51.38  max 166.71 ms  (n=21102)
//	retrieve       p50 9.31  p95 29.36  p99 52.43  max 209.19 ms  (n=21102)
//	bye            p50 9.18  p95 27.79  p99 49.28  max 201.55 ms  (n=21102)
//	server bye     p50 18.61  p95 50.33  p99 92.27  max 542.50 ms  (n=21102)  (...)
//	rtp            22917 packets received (music while parked; no expectation in cycle mode)
//	tool cpu       11.44 s = 57 % of a core = 542 µs/cycle; max RSS 678.2 MB
//	server cpu     23.60 s = 118 % of a core = 1118 µs/cycle
//	server         start          0 parked  rss 15.9 MB, heap in use 1.3 MB
//	server         end            0 parked  rss 689.2 MB, heap in use 605.1 MB
//	machine        1.97 of 2 cores busy over the run; 0.21 of them neither the tool's nor the server's
//	from server    BYE 21102 (0 for no dialog), re-INVITE 19285, INVITE 0, OPTIONS 0, ...
//
// and in hold mode, instead of the cycle lines:
//
//	parked         2000 of 2000 held through the window; 0 ended by the server early
//	rtp            1998647 of 2000000 expected in the 20.0 s window = 99.932 %; 0 lost by sequence; ...
//	per second     first 100.09 %, last 98.52 %, lowest 97.59 %, highest 102.65 % of the packets due
//	jitter         |Δ − 20 ms| p50 1.441  p99 9.699  p99.9 15.073  max 25.838 ms; longest gap 45.8 ms (kernel timestamps, read from the ring)
//	music start    ACK → first packet p50 1.60  p95 14.15  p99 28.84  max 57.86 ms  (n=2000); ...
//	server/call    heap +11997 B, rss +15376 B per parked call (...)
//
// The "machine" line counts every program's CPU: on a shared machine a
// slow run with a large "neither" share measured someone else's build, not
// the server. A window can hold one packet more than its 20 ms share per
// call, so a perfect run may read slightly above 100 %.
//
// Failures are counted by step and final status code, or "timeout" (no
// final answer within -timeout) or "transport"; the cycle then cleans up
// and the next one starts. Latencies come from log-linear histograms (HDR
// layout, < 1.6 % error, nothing sorted). Exit status: 0 when the run
// completed, failures or not; 2 for a bad flag, with one line naming it; 1
// when the target never answered (an OPTIONS probe before the run) or the
// run could not start.
//
// # Design
//
// One sipgo user agent carries every call: one UDP socket and TCP listener
// on one port of -local (the park server's siptransport.Stack, so that
// closing it leaves sipgo no socket to open), from which requests also
// leave, and a sipgo.DialogClientCache,
// so the server's BYE to a parked call finds its dialog. OPTIONS, NOTIFY and
// MESSAGE get 200; a BYE or re-INVITE for an unknown dialog 481; a new
// INVITE 603 (cycle and hold modes name no parker, so nothing should ring
// it), but in soak mode an INVITE to a parker one of its calls named goes
// to that call's worker (a sipgo.DialogServerCache holds the ones it
// answers). A SIP cycle costs the tool about 14 messages (7 each way), and
// sipgo about 35 µs of CPU per message on a small VM: the tool's share is
// measured and printed, never guessed.
//
// Cycle workers reuse their two RTP sockets and only count what arrives.
// Hold mode measures 100,000 packets a second at 2,000 calls, so on Linux
// one goroutine reads every call's socket through epoll, draining them
// every 5 ms: one recvmsg per packet and no goroutine wake-up, with
// arrival times from the kernel (SO_TIMESTAMPNS), so batching and the
// tool's own scheduling do not show up as the server's jitter. Elsewhere
// each socket has a reader goroutine. Nothing is allocated per packet.
//
// The tool runs with GOGC=400 and a 1 GiB soft memory limit unless GOGC or
// GOMEMLIMIT are set: sipgo keeps every answered INVITE transaction
// reachable for 32 s, so the live heap holds about 32 s of calls, and
// fewer collections leave more CPU to the server under test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/examples/internal/siptune"
)

func main() {
	// sipgo writes a few records (connection reference counts) to its
	// package logger whatever a stack's own options say, and under load
	// they would flood stderr. The package logger is the program's to set,
	// and only before any sipgo code runs: sipgo reads it unsynchronized.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	siptune.Apply()
	// The tool shares the box with the server it measures: one P while
	// one core suffices costs it less CPU (fewer wake-ups of an idle P),
	// which leaves more to the server (BENCHMARKS.md, issue 16, goal 2).
	stop := siptune.ScaleProcs(nil)
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "parkload:", err)
		return 2
	}
	// The tool shares the machine with the server it measures: trade
	// memory for fewer collections (CPU the server could use). sipgo keeps
	// every answered INVITE transaction reachable for Timer M (siptune
	// shortens it from 32 s to 8 s), so the live heap is that long of
	// calls; the soft limit caps what GOGC=400 would make of it. GOGC and
	// GOMEMLIMIT in the environment win.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	}
	raiseFileLimit()
	if lim := fileLimit(); lim > 0 && cfg.mode == "hold" && lim < uint64(cfg.calls)+256 {
		fmt.Fprintf(stderr, "parkload: -calls %d: the open-file limit is %d; raise it (ulimit -n)\n", cfg.calls, lim)
		return 2
	}

	probe := newServerProbe(cfg)
	if cfg.serverDebug != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := probe.heap(ctx)
		cancel()
		if err != nil {
			fmt.Fprintf(stderr, "parkload: -server-debug %s: %v\n", cfg.serverDebug, err)
			return 2
		}
	}

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "parkload: -cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "parkload: -cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	a, err := newAgent(cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "parkload:", err)
		return 1
	}
	defer a.close()
	if !a.ping(context.Background(), 3*time.Second) {
		fmt.Fprintf(stderr, "parkload: -target %s: no answer to OPTIONS over %s within 3s\n", cfg.target, cfg.transport)
		return 1
	}

	var r *report
	switch cfg.mode {
	case "cycle":
		r, err = runCycle(cfg, a, probe, stderr)
	case "hold":
		r, err = runHold(cfg, a, probe, stderr)
	case "soak":
		r, err = runSoak(cfg, a, probe, stderr)
	}
	// Whatever the run left connected is hung up before the report, so the
	// server is not left holding calls (and a draining server waiting for
	// them) once the tool exits.
	hungUp := a.hangupHeld(context.Background())
	if err != nil {
		fmt.Fprintln(stderr, "parkload:", err)
		return 1
	}
	r.HungUpAtEnd = hungUp
	if cfg.json {
		if err := r.writeJSON(stdout); err != nil {
			fmt.Fprintln(stderr, "parkload:", err)
			return 1
		}
	} else {
		r.writeText(stdout)
	}
	return 0
}
