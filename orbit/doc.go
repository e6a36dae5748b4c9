// Package orbit says what a call park orbit is and who holds it.
//
// An orbit is the virtual extension a parked call waits on ("712", "*7012",
// "#105"). Every other layer of callpark needs the same few answers about
// orbits: is this dialed number an orbit at all, which node serves it, and
// which free orbit should the next parked call get. Keeping those answers in
// one small package with no SIP, media or network code means a vendor with
// its own SIP stack, the park lifecycle and the SIP adapter all number orbits
// the same way, and each rule is tested once.
//
// Numbering follows Lync Server 2013 call park: an optional "*" or "#"
// prefix, a first digit of 1-9, at most 9 digits (8 after a prefix), a number
// above 100 after a prefix, ranges whose ends share length and prefix, at
// most 10,000 orbits a range and 50,000 a pool, and no overlap anywhere.
// Every rejection is a [*RuleError] that wraps one of the Err* sentinels, so
// a caller can test the rule with [errors.Is] and show the message, which
// names the offending value.
//
// A [Table] routes each orbit to the pool (node) that serves it, so any node
// can tell where a call parked on another node can be retrieved. An
// [Allocator] hands out the free orbits of one pool; [MemoryAllocator] is the
// in-process implementation, O(1) per call whatever the number of orbits. The
// interface takes a context and returns errors from the start so that a
// shared store serving several park servers can implement it unchanged.
package orbit
