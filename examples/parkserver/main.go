// Command parkserver is a standalone call park server: point a PBX trunk, a
// proxy or a phone's park key at it. Transfer or dial a call to the park
// extension (700) and it waits in an orbit (701-799) with music; dial the
// orbit to take it back; nobody does, and it rings back the parker.
//
//	go run ./examples/parkserver            # the contract's defaults, no file needed
//	go run ./examples/parkserver -check     # validate flags, print the configuration
//
// Every flag and its default is in docs/SIP-CONTRACT.md.
//
// It runs its Go code on one core (GOMAXPROCS 1) while that suffices and
// takes more as the load needs them: a SIP server on one P wakes no idle
// one for each message, which at 1,000 park → retrieve cycles a second
// saves about a fifth of its CPU (siptune.ScaleProcs). Setting GOMAXPROCS
// in the environment turns this off.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	_ "expvar" // memstats at /debug/vars with -pprof
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with -pprof
	"os"
	"runtime"

	"github.com/callpark/callpark/examples/internal/parkflags"
	"github.com/callpark/callpark/examples/internal/siptune"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parkserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", sipadapter.DefaultListen, "SIP over UDP and TCP on this `address`")
	pf := parkflags.Register(fs)
	cf := parkflags.RegisterCluster(fs)
	hf := parkflags.RegisterHTTP(fs)
	srtp := parkflags.RegisterSRTP(fs)
	tf := parkflags.RegisterTLS(fs)
	configPath := parkflags.RegisterConfig(fs)
	abuse := registerAbuseFlags(fs)
	outboundProxy := fs.String("outbound-proxy", "", "sip: `URI` of the proxy recalls, the fallback and parker notices go through (the PBX that knows where phones are); empty: to the parker's URI")
	sharedRTP := fs.Bool("shared-rtp", runtime.GOOS == "linux", "answer parked calls with one shared RTP port, the first free one of -rtp-ports, told apart by the phones' addresses; their music then leaves in batches (Linux: sendmmsg). Phones behind NAT must send RTP from the address they signal from or name in SDP (see docs/SIP-CONTRACT.md); false gives each parked call a port of its own")
	check := fs.Bool("check", false, "validate the flags, print the effective configuration, exit")
	logging := siptune.RegisterLogging(fs)
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof and expvar on this `address` (e.g. 127.0.0.1:6060), for profiling under load; off by default")
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
	var file *parkflags.ConfigFile
	if *configPath != "" {
		var err error
		if file, err = parkflags.LoadConfig(fs, *configPath); err != nil {
			fmt.Fprintln(stderr, "parkserver:", err)
			return 2
		}
	}

	logger, err := logging.Setup(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	set, err := pf.Resolve(*listen, logger)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	cs, err := cf.Resolve(set.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	hs, err := hf.Resolve()
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	ts, err := tf.Resolve()
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	cfg := sipadapter.Config{
		Park:          set.Park,
		Orbits:        set.Orbits,
		Policy:        set.Policy,
		ParkExtension: set.ParkExtension,
		Listen:        set.Listen.String(),
		MediaIP:       set.MediaIP,
		RTPPortMin:    set.RTPPortMin,
		RTPPortMax:    set.RTPPortMax,
		SharedRTPPort: *sharedRTP,
		SRTP:          srtp.Policy(),
		Logger:        logger,
		OutboundProxy: *outboundProxy,
		CrossNode:     cs.CrossNode,
		Announcements: set.Announcements,
		Notify:        set.Notify,
		Paging:        set.Paging,
		TLSListen:     ts.Listen,
		TLS:           ts.Config,
	}
	if err := abuse.apply(&cfg); err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	if *check {
		srv, err := sipadapter.New(cfg)
		if err != nil {
			fmt.Fprintln(stderr, "parkserver:", err)
			return 2
		}
		fmt.Fprintf(stdout, "listen      %s (udp, tcp)\n", set.Listen)
		pf.Print(stdout, set, srv.Lot().Config())
		fmt.Fprintf(stdout, "shared-rtp  %t\n", *sharedRTP)
		fmt.Fprintf(stdout, "outbound-proxy %s\n", cmp.Or(*outboundProxy, "(none: recalls go to the parker's URI)"))
		abuse.print(stdout)
		cs.Print(stdout)
		hs.Print(stdout)
		ts.Print(stdout)
		return cs.RunCheck("parkserver", set.Orbits, set.Policy, stdout, stderr)
	}

	cluster, code := cs.JoinOrExit("parkserver", set.Orbits, set.Policy, &cfg.Park, logger, stderr)
	if code != 0 {
		return code
	}
	// One P, more when the load needs them; before New, whose music
	// scheduler takes a shard per P.
	defer siptune.ScaleProcs(logger)()
	srv, err := sipadapter.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 2
	}
	if cluster != nil {
		cluster.Bind(srv.Lot())
		defer cluster.Leave(logger)
	}

	signals := parkflags.CatchSignals()
	defer signals.Release()
	reloader := parkflags.NewReloader(file, *listen, logger, func(s parkflags.Settings) error {
		return srv.Reconfigure(s.Park, s.Orbits)
	})
	reloader.Certificates(ts)
	defer reloader.OnHangup()()
	if err := srv.Listen(context.Background()); err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 1
	}
	if cluster != nil {
		if err := cluster.Listening(srv.Addr()); err != nil {
			logger.Warn("advertising the SIP address failed", "err", err)
		}
	}
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) { parkflags.LogEvent(logger, e) }))
	op, err := hs.Serve(parkflags.OperatorConfig{
		Lot: srv.Lot(), Metrics: srv.Metrics(), Cluster: cluster, Logger: logger, TLS: ts.Config,
		Settings: func() map[string]any { return parkflags.Shown(set, cs, srv.Addr()) },
		Reload:   reloader.Handler(),
	})
	if err != nil {
		fmt.Fprintln(stderr, "parkserver:", err)
		return 1
	}
	defer op.Close(context.Background())
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fmt.Fprintln(stderr, "parkserver: -pprof:", err)
			return 1
		}
		logger.Info("profiling on", "addr", "http://"+ln.Addr().String()+"/debug/pprof/")
		// The default mux holds the pprof and expvar handlers, registered by
		// their imports; /debug/rtp (the music scheduler's counters and
		// lateness, the shared RTP port's) is this run's own.
		mux := http.NewServeMux()
		mux.Handle("/", http.DefaultServeMux)
		mux.HandleFunc("/debug/rtp", func(w http.ResponseWriter, _ *http.Request) {
			shared, _ := srv.SharedRTPStats()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"scheduler": srv.RTPStats(), "shared_port": shared})
		})
		go func() { _ = http.Serve(ln, mux) }()
		defer ln.Close()
	}
	if err := signals.Drain(logger, set.Drain, srv.Lot().Len, srv.Shutdown); err != nil {
		logger.Warn("shutdown cut short: calls still parked or connected were ended", "err", err)
		return 1
	}
	logger.Info("every call ended; exiting")
	return 0
}
