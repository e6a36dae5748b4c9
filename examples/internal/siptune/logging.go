package siptune

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/emiago/sipgo/sip"
)

// Logging is the servers' -v and -log-level flags.
type Logging struct {
	verbose *bool
	level   *string
}

// RegisterLogging defines -v and -log-level on fs.
func RegisterLogging(fs *flag.FlagSet) *Logging {
	return &Logging{
		verbose: fs.Bool("v", false, "log SIP traces"),
		level:   fs.String("log-level", "info", "least important log lines kept: debug, info, warn or error (-v sets debug)"),
	}
}

// Setup makes the program's logger, writing to w, and applies the sipgo
// package settings a program owns: sipgo's own logger (some of its records
// reach only that), whole-message traces with -v, and ApplyServer and ApplyGC. A
// bad -log-level is an error naming the flag.
func (l *Logging) Setup(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(*l.level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", *l.level)
	}
	if *l.verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	sip.SetDefaultLogger(logger.With("component", "sip"))
	sip.SIPDebug = *l.verbose
	ApplyServer()
	ApplyGC()
	return logger, nil
}
