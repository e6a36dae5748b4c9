package parkflags

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Signals are SIGINT and SIGTERM, caught from the moment CatchSignals is
// called: before the program listens, so that a signal sent the moment it
// says it listens is not lost to the default action.
type Signals struct{ c chan os.Signal }

// CatchSignals starts catching SIGINT and SIGTERM.
func CatchSignals() *Signals {
	s := &Signals{c: make(chan os.Signal, 2)}
	signal.Notify(s.c, os.Interrupt, syscall.SIGTERM)
	return s
}

// Release stops catching them.
func (s *Signals) Release() { signal.Stop(s.c) }

// Drain is how both programs end, as Asterisk's "core stop gracefully" and
// http.Server.Shutdown do: at SIGINT or SIGTERM the program stops taking
// parks (503) and recalls every parked call at once; the calls still
// connected through it (retrieved, recalled) go on until their parties hang
// up. drain bounds the whole, after which what is left gets BYE; a second
// signal ends it at once. Drain waits for the first signal, then calls
// shutdown with a context that ends at the drain time or at the second
// signal, and returns what shutdown returns: nil when every call ended by
// itself.
func (s *Signals) Drain(logger *slog.Logger, drain time.Duration, parked func() int, shutdown func(context.Context) error) error {
	sig := <-s.c
	logger.Info("shutting down: recalling every parked call", "signal", sig.String(), "parked", parked(), "drain", drain)
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-s.c:
			logger.Warn("second signal: ending every call now", "signal", sig.String())
			cancel()
		case <-done:
		}
	}()
	return shutdown(ctx)
}
