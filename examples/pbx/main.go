// Command pbx is a small but real PBX with call park built in, the way a
// vendor embeds callpark in its own switch: a registrar and a
// back-to-back user agent on sipgo, whose calls run their audio through the
// media package, and whose park, retrieve, recall and BLF come from the
// park and sipadapter packages.
//
//	go run ./examples/pbx                     # 127.0.0.1:5060, extensions 100-199, any password
//	go run ./examples/pbx -users users.txt    # only these user:password lines, digest auth
//
// Register phones as 100-199, call between them, transfer a call to 700 to
// park it (the orbit comes back in the transfer's NOTIFY and as a MESSAGE),
// dial the orbit from any phone to take it back. Nobody does, and the parker's
// phones ring again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/callpark/callpark/examples/internal/parkflags"
	"github.com/callpark/callpark/examples/internal/siptune"
	"github.com/callpark/callpark/park"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pbx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5060", "SIP over UDP and TCP on this `address`")
	usersFile := fs.String("users", "", "`file` of user:password lines; each must register with digest auth (default: extensions 100-199, any password)")
	ringTimeout := fs.Duration("ring-timeout", DefaultRingTimeout, "how long a call to an extension rings before the caller hears 480")
	pf := parkflags.Register(fs)
	cf := parkflags.RegisterCluster(fs)
	hf := parkflags.RegisterHTTP(fs)
	srtp := parkflags.RegisterSRTP(fs)
	tf := parkflags.RegisterTLS(fs)
	configPath := parkflags.RegisterConfig(fs)
	check := fs.Bool("check", false, "validate the flags, print the effective configuration, exit")
	logging := siptune.RegisterLogging(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pbx: unexpected argument %q: every setting is a flag\n", fs.Arg(0))
		return 2
	}
	var file *parkflags.ConfigFile
	if *configPath != "" {
		var err error
		if file, err = parkflags.LoadConfig(fs, *configPath); err != nil {
			fmt.Fprintln(stderr, "pbx:", err)
			return 2
		}
	}
	logger, err := logging.Setup(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}

	// The fallback may be an extension of this PBX: -fallback 150.
	if parkflags.ValidExtension(pf.Fallback) && !park.IsSIPURI(pf.Fallback) {
		pf.Fallback = "sip:" + pf.Fallback + "@" + *listen
	}
	set, err := pf.Resolve(*listen, logger)
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}
	cs, err := cf.Resolve(set.Listen)
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}
	hs, err := hf.Resolve()
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}
	ts, err := tf.Resolve()
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}
	if *ringTimeout < time.Second {
		fmt.Fprintf(stderr, "pbx: -ring-timeout %v: must be at least 1s\n", *ringTimeout)
		return 2
	}
	users := OpenUsers()
	if *usersFile != "" {
		if users, err = LoadUsers(*usersFile); err != nil {
			fmt.Fprintln(stderr, "pbx: -users:", err)
			return 2
		}
	}
	var cluster *parkflags.Cluster
	if !*check {
		var code int
		if cluster, code = cs.JoinOrExit("pbx", set.Orbits, set.Policy, &set.Park, logger, stderr); code != 0 {
			return code
		}
		if cluster != nil {
			defer cluster.Leave(logger)
		}
	}
	p, err := NewPBX(Config{
		Listen:        set.Listen.String(),
		TLSListen:     ts.Listen,
		TLS:           ts.Config,
		Users:         users,
		ParkExtension: set.ParkExtension,
		Orbits:        set.Orbits,
		Policy:        set.Policy,
		Park:          set.Park,
		RingTimeout:   *ringTimeout,
		MediaIP:       set.MediaIP,
		RTPPortMin:    set.RTPPortMin,
		RTPPortMax:    set.RTPPortMax,
		SRTP:          srtp.Policy(),
		Logger:        logger,
		CrossNode:     cs.CrossNode,
		Announcements: set.Announcements,
		Notify:        set.Notify,
		Paging:        set.Paging,
		TrustForwarded: func(src netip.AddrPort) bool {
			return cluster != nil && cluster.TrustForwarded(src)
		},
	})
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 2
	}
	if cluster != nil {
		cluster.Bind(p.Lot())
	}
	if *check {
		fmt.Fprintf(stdout, "listen      %s (udp, tcp)\n", set.Listen)
		fmt.Fprintf(stdout, "users       %s\n", users)
		fmt.Fprintf(stdout, "ring        %v\n", *ringTimeout)
		pf.Print(stdout, set, p.Lot().Config())
		cs.Print(stdout)
		hs.Print(stdout)
		ts.Print(stdout)
		return cs.RunCheck("pbx", set.Orbits, set.Policy, stdout, stderr)
	}

	signals := parkflags.CatchSignals()
	defer signals.Release()
	reloader := parkflags.NewReloader(file, *listen, logger, func(s parkflags.Settings) error {
		return p.Reconfigure(s.Park, s.Orbits)
	})
	reloader.Certificates(ts)
	defer reloader.OnHangup()()
	if err := p.Listen(context.Background()); err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 1
	}
	if cluster != nil {
		if err := cluster.Listening(p.Addr()); err != nil {
			logger.Warn("advertising the SIP address failed", "err", err)
		}
	}
	p.Lot().Observe(park.ObserverFunc(func(e park.Event) { parkflags.LogEvent(logger, e) }))
	op, err := hs.Serve(parkflags.OperatorConfig{
		Lot: p.Lot(), Metrics: p.Metrics(), Cluster: cluster, Logger: logger, TLS: ts.Config,
		Settings: func() map[string]any { return parkflags.Shown(set, cs, p.Addr()) },
		Reload:   reloader.Handler(),
	})
	if err != nil {
		fmt.Fprintln(stderr, "pbx:", err)
		return 1
	}
	defer op.Close(context.Background())
	if err := signals.Drain(logger, set.Drain, p.Lot().Len, p.Shutdown); err != nil {
		logger.Warn("shutdown cut short: calls still parked or connected were ended", "err", err)
		return 1
	}
	logger.Info("every call ended; exiting")
	return 0
}
