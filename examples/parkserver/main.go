// Command parkserver is a standalone call park server: point a PBX trunk, a
// proxy or a phone's park key at it. Transfer or dial a call to the park
// extension (700) and it waits in an orbit (701-799) with music; dial the
// orbit to take it back; nobody does, and it rings back the parker.
//
//	go run ./examples/parkserver            # the contract's defaults, no file needed
//	go run ./examples/parkserver -check     # validate flags, print the configuration
//
// Every flag and its default is in docs/SIP-CONTRACT.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed flags, before validation.
type options struct {
	listen, mediaIP, rtpPorts, parkExt, orbits, policy string
	timeout, recallRing                                time.Duration
	attempts                                           int
	fallback, moh                                      string
	check, verbose                                     bool
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parkserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.listen, "listen", sipadapter.DefaultListen, "SIP over UDP and TCP on this `address`")
	fs.StringVar(&o.mediaIP, "media-ip", "", "`address` written into SDP c= lines (default: the listen IP)")
	fs.StringVar(&o.rtpPorts, "rtp-ports", "20000-29999", "local UDP `ports` for RTP, one per call leg")
	fs.StringVar(&o.parkExt, "park-ext", sipadapter.DefaultParkExtension, "the park `extension`: dial or transfer here to park")
	fs.StringVar(&o.orbits, "orbits", park.DefaultOrbits, "orbit `ranges`, comma separated (e.g. *7000-*7099,#1000-#1999,7000-7999)")
	fs.StringVar(&o.policy, "policy", "lru", "orbit choice: lru, lowest or random")
	fs.DurationVar(&o.timeout, "timeout", park.DefaultPickupTimeout, "pickup timeout before a recall: 10s to 10m")
	fs.IntVar(&o.attempts, "attempts", park.DefaultMaxPickupAttempts, "recalls to the parker: 1 to 10")
	fs.DurationVar(&o.recallRing, "recall-ring", park.DefaultRecallRingTime, "how long each recall rings the parker")
	fs.StringVar(&o.fallback, "fallback", "", "sip: `URI` to ring after the last recall; empty: disconnect")
	fs.StringVar(&o.moh, "moh", "default", "music on hold: default, none, or a WAV file `path`")
	fs.BoolVar(&o.check, "check", false, "validate the flags, print the effective configuration, exit")
	fs.BoolVar(&o.verbose, "v", false, "log SIP traces")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "parkserver: unexpected argument %q: every setting is a flag\n", fs.Arg(0))
		return 2
	}

	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// sipgo writes some records to its package logger, and traces whole
	// messages only through a package switch: both are the program's to set.
	sip.SetDefaultLogger(logger.With("component", "sip"))
	sip.SIPDebug = o.verbose
	cfg, table, err := o.config(logger)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	srv, err := sipadapter.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	if o.check {
		printConfig(stdout, o, srv.Lot().Config(), table)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := srv.Listen(context.Background()); err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 1
	}
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) { logEvent(logger, e) }))
	<-ctx.Done()
	stop()
	logger.Info("shutting down: recalling every parked call", "parked", srv.Lot().Len())
	// The contract: exit within 10 s of the signal plus one recall ring.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+srv.Lot().Config().RecallRingTime)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown cut short: calls still parked were dropped", "err", err)
		return 1
	}
	return 0
}

// config validates the flags into a server configuration; each error names
// the flag and the rule.
func (o options) config(logger *slog.Logger) (sipadapter.Config, *orbit.Table, error) {
	var cfg sipadapter.Config
	listen, err := netip.ParseAddrPort(o.listen)
	if err != nil {
		return cfg, nil, fmt.Errorf("-listen %q: want IP:port, such as 127.0.0.1:5060", o.listen)
	}
	cfg.Listen = listen.String()
	if o.mediaIP != "" {
		if cfg.MediaIP, err = netip.ParseAddr(o.mediaIP); err != nil || cfg.MediaIP.IsUnspecified() {
			return cfg, nil, fmt.Errorf("-media-ip %q: want the IP address phones reach for RTP", o.mediaIP)
		}
	} else if listen.Addr().IsUnspecified() {
		return cfg, nil, fmt.Errorf("-media-ip: -listen %s is every address, so name the address phones reach for RTP", listen)
	}
	lo, hi, ok := strings.Cut(o.rtpPorts, "-")
	if cfg.RTPPortMin, err = strconv.Atoi(lo); !ok || err != nil {
		return cfg, nil, fmt.Errorf("-rtp-ports %q: want LOW-HIGH, such as 20000-29999", o.rtpPorts)
	}
	if cfg.RTPPortMax, err = strconv.Atoi(hi); err != nil || cfg.RTPPortMin < 1024 || cfg.RTPPortMax > 65535 || cfg.RTPPortMin > cfg.RTPPortMax {
		return cfg, nil, fmt.Errorf("-rtp-ports %q: want LOW-HIGH within 1024-65535, low end first", o.rtpPorts)
	}
	if !validExtension(o.parkExt) {
		return cfg, nil, fmt.Errorf("-park-ext %q: want a dialable extension such as 700", o.parkExt)
	}
	cfg.ParkExtension = o.parkExt
	table, err := orbit.ParseTable(o.orbits)
	if err != nil {
		return cfg, nil, fmt.Errorf("-orbits: %w", err)
	}
	if len(table.Pools()) != 1 || table.Pools()[0] != "" {
		return cfg, nil, fmt.Errorf("-orbits %q: pool names (pool=range) are for shared tables; a single server serves plain ranges", o.orbits)
	}
	cfg.Orbits = table
	if e, ok := table.Lookup(orbit.Orbit(o.parkExt)); ok {
		return cfg, nil, fmt.Errorf("-park-ext %q: lies inside the orbit range %s; the park extension must be outside every range", o.parkExt, e.Range)
	}
	if cfg.Policy, err = orbit.ParsePolicy(o.policy); err != nil {
		return cfg, nil, fmt.Errorf("-policy %q: want lru, lowest or random", o.policy)
	}
	cfg.Park = park.Config{
		PickupTimeout:     o.timeout,
		MaxPickupAttempts: o.attempts,
		RecallRingTime:    o.recallRing,
		FallbackURI:       o.fallback,
		Logger:            logger,
	}
	// The limits are park's; they are checked here too because a flag's 0
	// is a value to refuse, where park.Config's 0 means "the default".
	if o.timeout < park.MinPickupTimeout || o.timeout > park.MaxPickupTimeout {
		return cfg, nil, fmt.Errorf("-timeout %v: must be between %v and %v", o.timeout, park.MinPickupTimeout, park.MaxPickupTimeout)
	}
	if o.attempts < 1 || o.attempts > park.MaxMaxPickupAttempts {
		return cfg, nil, fmt.Errorf("-attempts %d: must be between 1 and %d", o.attempts, park.MaxMaxPickupAttempts)
	}
	if o.recallRing < park.MinRecallRingTime || o.recallRing > park.MaxRecallRingTime {
		return cfg, nil, fmt.Errorf("-recall-ring %v: must be between %v and %v", o.recallRing, park.MinRecallRingTime, park.MaxRecallRingTime)
	}
	if o.fallback != "" && !park.IsSIPURI(o.fallback) {
		return cfg, nil, fmt.Errorf("-fallback %q: must be a sip: URI such as sip:operator@10.0.0.5, or empty", o.fallback)
	}
	switch o.moh {
	case "default":
	case "none":
		cfg.Park.DisableMusicOnHold = true
	default:
		clip, err := media.LoadWAV(o.moh)
		if err != nil {
			return cfg, nil, fmt.Errorf("-moh: %w", err)
		}
		cfg.Park.MusicOnHold = clip
	}
	cfg.Logger = logger
	return cfg, table, nil
}

func printConfig(w io.Writer, o options, pc park.Config, table *orbit.Table) {
	fmt.Fprintf(w, "listen      %s (udp, tcp)\n", o.listen)
	mediaIP := o.mediaIP
	if mediaIP == "" {
		mediaIP, _, _ = strings.Cut(o.listen, ":")
	}
	fmt.Fprintf(w, "media-ip    %s\n", mediaIP)
	fmt.Fprintf(w, "rtp-ports   %s\n", o.rtpPorts)
	fmt.Fprintf(w, "park-ext    %s\n", o.parkExt)
	total := 0
	for _, r := range table.Ranges("") {
		fmt.Fprintf(w, "orbits      %s (%d orbits)\n", r, r.Len())
		total += r.Len()
	}
	fmt.Fprintf(w, "policy      %s\n", o.policy)
	fmt.Fprintf(w, "timeout     %v\n", pc.PickupTimeout)
	fmt.Fprintf(w, "attempts    %d\n", pc.MaxPickupAttempts)
	fmt.Fprintf(w, "recall-ring %v\n", pc.RecallRingTime)
	fallback := pc.FallbackURI
	if fallback == "" {
		fallback = "(none: disconnect after the last recall)"
	}
	fmt.Fprintf(w, "fallback    %s\n", fallback)
	moh := o.moh
	if o.moh == "default" {
		moh = "default (built-in music)"
	}
	fmt.Fprintf(w, "moh         %s\n", moh)
	fmt.Fprintf(w, "total       %d orbits\n", total)
}

// logEvent logs what the SIP layer cannot see: recalls and the fallback
// ringing, failing, being answered, and calls dropped. Parks, retrieves,
// hang-ups and refusals are logged by sipadapter, so each happening has one
// line.
func logEvent(l *slog.Logger, e park.Event) {
	attrs := []any{"orbit", e.Call.Orbit, "park_id", e.Call.ParkID, "parker", e.Call.Parker}
	switch e.Kind {
	case park.EventRinging:
		l.Info(e.Purpose.String(), append(attrs, "target", e.Target, "attempt", e.Attempt)...)
	case park.EventRingFailed:
		l.Info(e.Purpose.String()+" failed", append(attrs, "target", e.Target, "attempt", e.Attempt, "err", e.Err)...)
	case park.EventEnded:
		switch e.Outcome {
		case park.Recalled, park.Forwarded, park.Dropped:
			l.Info(e.Outcome.String(), append(attrs, "outcome", e.Outcome)...)
		}
	}
}

// validExtension accepts what a phone can dial as a SIP user part: digits,
// letters, * # + . _ -.
func validExtension(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("*#+._-", r)) {
			return false
		}
	}
	return true
}
