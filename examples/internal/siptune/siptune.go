// Package siptune is the sipgo and runtime setup the example programs
// share: their logging flags, and tuning (sipgo's transaction timers, the
// collector's target and limit, the P count by load). sipgo keeps its
// logger and its timers in package variables, and the runtime's settings
// are the process's: a library must leave them alone and a program may set
// them; a host embedding sipadapter under load wants the same in its own
// main.
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

// ServerAcceptedLinger is how long the servers let sipgo keep an INVITE
// server transaction answered 2xx (Timer L).
const ServerAcceptedLinger = time.Second

// ApplyServer sets Timer L, for the servers only, to ServerAcceptedLinger.
//
// Why: sipadapter ends every INVITE server transaction when its handler
// returns, after the ACK (a late copy of the INVITE is then a merged
// request, 482), and sipgo's dialog layer, not the transaction, resends a
// 2xx whose ACK is lost. So on the server side Timer L no longer absorbs
// anything: it only keeps the dead transaction, its request, its 2xx and
// the dialog in memory, because sipgo v1.7.3 does not stop the timer when
// the transaction ends. At 1,000 park → retrieve cycles a second that was
// two INVITEs a millisecond held for 8 s: with 1 s the server's RSS after
// 30 s is 251 MB instead of 795-915 MB, and p99 setup 17.8 ms instead of
// 34-82 ms (BENCHMARKS.md, issue 16). A host that answers INVITEs with
// sipgo directly, without ending the transaction in its handler, must
// not take this: a retransmitted INVITE more than 1 s after a lost 2xx
// would start a second transaction.
//
// It also sets Timer J, how long a non-INVITE server transaction answered
// over UDP is kept to absorb retransmissions of its request, from 64 × T1
// (32 s) to ServerNonInviteLinger. Why: every cycle's BYE is one, and at
// 1,000 cycles a second 32,000 of them (request, 200, headers, timer)
// were held, most of the server's live heap and of what each collection
// marks. 4 s still answers from the transaction the retransmissions sent
// 0.5, 1.5 and 3.5 s after the request (RFC 3261 §17.1.2.2: its 200 lost
// three times in a row); a later one starts a new transaction, which for a
// BYE is a 481 (the dialog has ended), as it would be for a BYE sent twice.
func ApplyServer() {
	Apply()
	sip.Timer_L = ServerAcceptedLinger
	sip.Timer_J = ServerNonInviteLinger
}

// ServerNonInviteLinger is how long the servers let sipgo keep a
// non-INVITE server transaction answered over UDP (Timer J).
const ServerNonInviteLinger = 4 * time.Second

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
//
// It also sets a soft memory limit of MemoryLimit unless GOMEMLIMIT is set:
// GCPercent lets the heap grow to five times what is live, which is cheap
// while little is live and a gigabyte of RSS at 1,000 cycles a second; the
// limit makes the collector work harder only once the heap nears it.
func ApplyGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(MemoryLimit)
	}
}

// MemoryLimit is the servers' soft memory limit (see ApplyGC). With the
// live heap bounded by ApplyServer (about 160 MB at 1,000 cycles a second),
// it keeps the RSS at about 225 MB there for no measurable CPU; with
// Timer L at 8 s the same limit made the collector run all the time (1,115
// instead of 868 µs of CPU per cycle), which is why it comes with
// ApplyServer and not alone.
const MemoryLimit = 230 << 20
