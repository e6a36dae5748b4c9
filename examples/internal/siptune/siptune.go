// Package siptune is the sipgo setup the example servers share: their
// logging flags, and tuning. sipgo keeps its logger and its transaction
// timers in package variables, which a library must leave alone and a
// program may set; a host embedding sipadapter under load wants the same in
// its own main.
package siptune

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"
)

// AcceptedLinger is how long an INVITE transaction answered 2xx is kept,
// server side (Timer L) and client side (Timer M): 16 × T1 covers the
// retransmissions of a lost 2xx or ACK at 0.5, 1, 2 and 4 s.
const AcceptedLinger = 8 * time.Second

// Apply shortens Timers L and M from 64 × T1 (32 s) to AcceptedLinger.
//
// Why: sipgo v1.7.3 never stops either timer, not even when the transaction
// is terminated, so every answered INVITE, with the dialog its callbacks
// reference, stays in memory for 32 s. Measured with examples/parkload at
// about 1,100 park → retrieve cycles a second: the park server's heap
// reached 590 MB after 20 s and the garbage collector took a quarter of its
// CPU; with 8 s the heap stays under 200 MB (BENCHMARKS.md).
func Apply() {
	sip.Timer_L = AcceptedLinger
	sip.Timer_M = AcceptedLinger
}

// GCPercent is the garbage collector's target the servers run with unless
// GOGC is set: four times the default's spacing between collections.
const GCPercent = 400

// ApplyGC sets the collector's target to GCPercent unless the environment
// sets GOGC. Why: a SIP stack allocates per message (sipgo parses every
// header into objects), so collection work follows the message rate, not
// the calls in progress. At 1,000 park → retrieve cycles a second it was a
// quarter of the park server's CPU, and the stalls it adds put the 99th
// percentile of call setup at 28 ms; with 400 it is 17 ms, for about twice
// the resident memory (BENCHMARKS.md).
func ApplyGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
}
