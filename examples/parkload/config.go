package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is the checked command line.
type config struct {
	target netip.AddrPort
	// retrieveAt are the nodes of a cluster the cycle mode parks and
	// retrieves at in turn (-cluster-targets): a call parked at the k-th is
	// retrieved at the next, so every retrieve crosses nodes. Empty: all
	// at target.
	retrieveAt []netip.AddrPort
	transport  string // "udp" or "tcp"
	mode       string // "cycle", "hold" or "soak"

	workers  int
	duration time.Duration

	calls       int
	rx          string // hold mode's receiver: rxAuto, rxRing or rxSockets
	hold        time.Duration
	rate        float64
	cycleRate   float64 // cycle mode: starts per second in all; 0 = unpaced
	checkpoints []int   // ascending, within 0..calls; always holds 0 and calls

	parkExt          string
	local            netip.Addr
	rtpMin, rtpMax   int
	timeout          time.Duration
	reinviteDelay    time.Duration // hold answers to the server's re-INVITEs this long
	warmup           time.Duration
	progress         time.Duration
	json             bool
	verbose          bool
	serverPID        int
	serverDebug      string // pprof base URL, no trailing slash
	checkpointSettle time.Duration
	byeConcurrency   int
	parkConcurrency  int
	cpuProfile       string

	// Soak mode: the mix of scenarios and what the tool must know of the
	// server's recall settings to bound its waits.
	mix           soakMix
	pickupTimeout time.Duration // the server's -timeout
	recallRing    time.Duration // the server's -recall-ring
	attempts      int           // the server's -attempts
	sampleEvery   time.Duration
	settle        time.Duration
}

// errFlag is a bad command line: exit status 2, one line naming the flag.
type errFlag struct{ msg string }

func (e *errFlag) Error() string { return e.msg }

func flagErr(format string, args ...any) error { return &errFlag{fmt.Sprintf(format, args...)} }

// Flags that belong to one mode only; giving one to the other mode is
// refused rather than silently ignored.
var (
	cycleOnly = []string{"workers", "duration", "cycle-rate"} // soak mode takes them too
	holdOnly  = []string{"calls", "hold", "rate", "warmup", "checkpoints", "rx"}
	soakOnly  = []string{"mix", "pickup-timeout", "recall-ring", "attempts", "sample-every", "settle"}
)

// parseFlags reads args into a config. The error is *errFlag for a bad
// value, or flag.ErrHelp.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("parkload", flag.ContinueOnError)
	// The flag package prints the usage after every error; a bad flag gets
	// one line instead, and -h the usage.
	fs.SetOutput(io.Discard)
	target := fs.String("target", "127.0.0.1:5060", "park server `host:port` (an IP address)")
	clusterTargets := fs.String("cluster-targets", "", "cycle mode: park servers of one cluster, comma separated `host:port`s: each cycle parks at one and retrieves at the next, so every retrieve is on another node than its park (-target is ignored)")
	transport := fs.String("transport", "udp", "SIP transport: udp or tcp")
	mode := fs.String("mode", "cycle", "cycle: park → retrieve → BYE loops; hold: park -calls calls and hold them; soak: a random mix of parks, hang-ups, re-parks and timeouts")
	workers := fs.Int("workers", 50, "cycle and soak modes: concurrent workers, each one call at a time")
	duration := fs.Duration("duration", 60*time.Second, "cycle and soak modes: how long to start calls")
	cycleRate := fs.Float64("cycle-rate", 0, "cycle and soak modes: start at most this many cycles (calls) per second in all (0: as fast as the workers go)")
	mix := fs.String("mix", defaultSoakMix, "soak mode: scenario `weights`, comma separated name=weight (retrieve, hangup, repark, repark-bye, repark-timeout, timeout)")
	pickupTimeout := fs.Duration("pickup-timeout", 10*time.Second, "soak mode: the server's -timeout (when it recalls an unretrieved call)")
	recallRing := fs.Duration("recall-ring", 2*time.Second, "soak mode: the server's -recall-ring")
	attempts := fs.Int("attempts", 1, "soak mode: the server's -attempts (recalls per timed-out call)")
	sampleEvery := fs.Duration("sample-every", time.Minute, "soak mode: sample the server's heap, RSS and goroutines this often (and at the start and end)")
	settle := fs.Duration("settle", 40*time.Second, "soak mode: after the load, wait this long before the idle sample (sipgo keeps finished REFER transactions 32 s)")
	calls := fs.Int("calls", 2000, "hold mode: calls to park and hold at once")
	hold := fs.Duration("hold", 30*time.Second, "hold mode: how long to measure the music once every call is parked")
	rate := fs.Float64("rate", 500, "hold mode: new calls per second while parking (and BYEs per second at the end)")
	checkpoints := fs.String("checkpoints", "", "hold mode: parked-call `counts` at which to pause ~1 s and sample the server (comma separated; 0 and -calls always)")
	rx := fs.String("rx", rxAuto, "hold mode: what reads the music: ring (a packet ring of the datagrams to the calls' ports: Linux, CAP_NET_RAW, an IPv4 -local), sockets (each call's socket), or auto (the ring where it can be opened)")
	parkExt := fs.String("park-ext", "700", "the server's park `extension`")
	local := fs.String("local", "127.0.0.1", "local `IP` for SIP and RTP")
	rtpPorts := fs.String("rtp-ports", "50000-59999", "local UDP `ports` for RTP (even ones are used)")
	timeout := fs.Duration("timeout", 5*time.Second, "how long a request may wait for its final response (and a retrieved call for the server's BYE) before it counts as a timeout")
	reinviteDelay := fs.Duration("reinvite-delay", 0, "answer the server's re-INVITEs this late, as phones whose answers are lost and resent under load do (a BYE meanwhile has the re-INVITE answered 487); 0: at once")
	warmup := fs.Duration("warmup", time.Second, "hold mode: wait between the last park and the measurement window")
	progress := fs.Duration("progress", 5*time.Second, "print a progress line to stderr this often; 0: never")
	jsonOut := fs.Bool("json", false, "print the report as one JSON object")
	verbose := fs.Bool("v", false, "log sipgo warnings and errors to stderr")
	serverPID := fs.Int("server-pid", 0, "the server's `pid`: sample its CPU time and RSS from /proc")
	cpuProfile := fs.String("cpuprofile", "", "write the tool's own CPU profile to this `file`")
	serverDebug := fs.String("server-debug", "", "the server's pprof base `URL` (e.g. http://127.0.0.1:6060): sample its heap")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: parkload [flags]   (go doc ./examples/parkload has the details)")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &errFlag{err.Error()} // names the flag
	}
	if fs.NArg() > 0 {
		return nil, flagErr("unexpected argument %q: every setting is a flag", fs.Arg(0))
	}
	c := &config{
		transport: strings.ToLower(*transport),
		mode:      strings.ToLower(*mode),
		workers:   *workers, duration: *duration, cycleRate: *cycleRate,
		calls: *calls, hold: *hold, rate: *rate, rx: *rx,
		parkExt: *parkExt, timeout: *timeout, reinviteDelay: *reinviteDelay, warmup: *warmup, progress: *progress,
		json: *jsonOut, verbose: *verbose, serverPID: *serverPID, cpuProfile: *cpuProfile,
		pickupTimeout: *pickupTimeout, recallRing: *recallRing, attempts: *attempts,
		sampleEvery: *sampleEvery, settle: *settle,
		checkpointSettle: time.Second,
		byeConcurrency:   256,
		parkConcurrency:  256,
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	var err error
	if c.target, err = netip.ParseAddrPort(*target); err != nil || c.target.Port() == 0 {
		return nil, flagErr("-target %q: want IP:port of the park server, such as 127.0.0.1:5060", *target)
	}
	c.target = netip.AddrPortFrom(c.target.Addr().Unmap(), c.target.Port())
	if *clusterTargets != "" {
		if c.mode != "cycle" {
			return nil, flagErr("-cluster-targets applies to -mode cycle only")
		}
		for _, s := range strings.Split(*clusterTargets, ",") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
			if err != nil || ap.Port() == 0 {
				return nil, flagErr("-cluster-targets %q: want IP:port of each park server, comma separated", *clusterTargets)
			}
			c.retrieveAt = append(c.retrieveAt, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		}
		if len(c.retrieveAt) < 2 {
			return nil, flagErr("-cluster-targets %q: want at least two park servers", *clusterTargets)
		}
		c.target = c.retrieveAt[0]
	}
	switch c.transport {
	case "udp", "tcp":
	default:
		return nil, flagErr("-transport %q: want udp or tcp", *transport)
	}
	if c.mode != "soak" {
		for _, name := range soakOnly {
			if set[name] {
				return nil, flagErr("-%s applies to -mode soak only", name)
			}
		}
	}
	switch c.mode {
	case "cycle", "soak":
		for _, name := range holdOnly {
			if set[name] {
				return nil, flagErr("-%s applies to -mode hold only", name)
			}
		}
		if c.workers < 1 || c.workers > 10000 {
			return nil, flagErr("-workers %d: want 1 to 10000", c.workers)
		}
		if c.duration <= 0 {
			return nil, flagErr("-duration %v: want a positive duration such as 60s", c.duration)
		}
		if c.cycleRate < 0 || c.cycleRate > 1e6 {
			return nil, flagErr("-cycle-rate %v: want cycles per second, 0 for unpaced", c.cycleRate)
		}
		if c.mode == "soak" {
			if err := c.checkSoak(*mix); err != nil {
				return nil, err
			}
		}
	case "hold":
		for _, name := range cycleOnly {
			if set[name] {
				return nil, flagErr("-%s applies to -mode cycle or soak only", name)
			}
		}
		if c.calls < 1 || c.calls > 100000 {
			return nil, flagErr("-calls %d: want 1 to 100000", c.calls)
		}
		if c.hold < 20*time.Millisecond {
			return nil, flagErr("-hold %v: want at least one packet time (20ms), such as 30s", c.hold)
		}
		if !(c.rate > 0) || c.rate > 1e6 {
			return nil, flagErr("-rate %v: want calls per second above 0", *rate)
		}
		if c.checkpoints, err = parseCheckpoints(*checkpoints, c.calls); err != nil {
			return nil, err
		}
		switch c.rx {
		case rxAuto, rxRing, rxSockets:
		default:
			return nil, flagErr("-rx %q: want ring, sockets or auto", *rx)
		}
	default:
		return nil, flagErr("-mode %q: want cycle, hold or soak", *mode)
	}
	if *parkExt == "" || strings.ContainsAny(*parkExt, "@:;<> \t") {
		return nil, flagErr("-park-ext %q: want the user part of the park URI, such as 700", *parkExt)
	}
	if c.local, err = netip.ParseAddr(*local); err != nil || c.local.IsUnspecified() {
		return nil, flagErr("-local %q: want the local IP address to bind (not 0.0.0.0: it is written into SDP)", *local)
	}
	c.local = c.local.Unmap()
	if c.local.Is4() != c.target.Addr().Is4() {
		return nil, flagErr("-local %s and -target %s: want the same IP family", c.local, c.target.Addr())
	}
	if c.rtpMin, c.rtpMax, err = parsePorts(*rtpPorts); err != nil {
		return nil, err
	}
	need := 2 * c.workers
	switch c.mode {
	case "hold":
		need = c.calls
	case "soak":
		need = 3 * c.workers // the parked party, the retriever, the parker's recall
	}
	if even := (c.rtpMax-c.rtpMin)/2 + 1; even < need {
		return nil, flagErr("-rtp-ports %q: %d even ports, %s needs %d", *rtpPorts, even, c.mode+" mode", need)
	}
	if c.timeout <= 0 {
		return nil, flagErr("-timeout %v: want a positive duration such as 5s", c.timeout)
	}
	if c.reinviteDelay < 0 {
		return nil, flagErr("-reinvite-delay %v: want 0 or more", c.reinviteDelay)
	}
	if c.warmup < 0 {
		return nil, flagErr("-warmup %v: want 0 or more", c.warmup)
	}
	if c.progress < 0 {
		return nil, flagErr("-progress %v: want 0 (off) or more", c.progress)
	}
	if c.serverPID < 0 {
		return nil, flagErr("-server-pid %d: want a process id", c.serverPID)
	}
	if c.serverPID > 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", c.serverPID)); err != nil {
			return nil, flagErr("-server-pid %d: no such process in /proc", c.serverPID)
		}
	}
	if *serverDebug != "" {
		u, err := url.Parse(*serverDebug)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, flagErr("-server-debug %q: want the pprof base URL, such as http://127.0.0.1:6060", *serverDebug)
		}
		c.serverDebug = strings.TrimSuffix(strings.TrimSuffix(*serverDebug, "/"), "/debug/pprof")
	}
	return c, nil
}

// checkSoak checks the soak mode's own flags.
func (c *config) checkSoak(mix string) error {
	var err error
	if c.mix, err = parseSoakMix(mix); err != nil {
		return err
	}
	// The server's own bounds (park.Config): a soak against a server that
	// accepted its flags cannot need more.
	if c.pickupTimeout < 10*time.Second || c.pickupTimeout > 10*time.Minute {
		return flagErr("-pickup-timeout %v: want the server's -timeout, 10s to 10m", c.pickupTimeout)
	}
	if c.recallRing < time.Second || c.recallRing > 10*time.Minute {
		return flagErr("-recall-ring %v: want the server's -recall-ring, 1s to 10m", c.recallRing)
	}
	if c.attempts < 1 || c.attempts > 10 {
		return flagErr("-attempts %d: want the server's -attempts, 1 to 10", c.attempts)
	}
	if c.sampleEvery < time.Second {
		return flagErr("-sample-every %v: want 1s or more, such as 1m", c.sampleEvery)
	}
	if c.settle < 0 {
		return flagErr("-settle %v: want 0 or more", c.settle)
	}
	return nil
}

// parsePorts reads LOW-HIGH.
func parsePorts(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || lo > hi {
		return 0, 0, flagErr("-rtp-ports %q: want LOW-HIGH within 1024-65535, low end first, such as 50000-59999", s)
	}
	return lo, hi, nil
}

// parseCheckpoints reads the parked-call counts to sample at; 0 and calls
// are always there.
func parseCheckpoints(s string, calls int) ([]int, error) {
	points := []int{0}
	if s != "" {
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return nil, flagErr("-checkpoints %q: want parked-call counts such as 0,1000,2000", s)
			}
			if n > calls {
				return nil, flagErr("-checkpoints %q: %d is more than -calls %d", s, n, calls)
			}
			if n <= points[len(points)-1] {
				if n == points[len(points)-1] {
					continue
				}
				return nil, flagErr("-checkpoints %q: want ascending counts", s)
			}
			points = append(points, n)
		}
	}
	if points[len(points)-1] != calls {
		points = append(points, calls)
	}
	return points, nil
}
