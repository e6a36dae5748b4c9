package sipadapter

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Limits bounds what one source address may hold or try, so that a SIP
// scanner or a runaway phone cannot guess its way into parked calls or take
// every RTP port and subscription slot. Counts are per source IP (the port
// is not part of it: a scanner changes ports at will). The zero value means
// the defaults below; a negative number turns that limit off.
//
// A PBX that carries every user's calls from one address should be listed in
// Trusted, since its address alone would reach the per-source limits of a
// busy office.
type Limits struct {
	// FailedRetrieves is how many INVITEs from one source may be answered
	// 404 (an empty orbit, or a user that is neither the park extension nor
	// an orbit) within FailedRetrieveWindow. Once that many have been,
	// retrieves and INVITEs to unknown users from that source get 403
	// Forbidden for FailedRetrieveBlock, whether the orbit holds a call or
	// not: guessing orbits stops paying. Parking is not blocked. 0 means 20.
	FailedRetrieves int
	// FailedRetrieveWindow is the window the failures are counted in; 0
	// means one minute.
	FailedRetrieveWindow time.Duration
	// FailedRetrieveBlock is how long a source that went over
	// FailedRetrieves is refused; 0 means five minutes.
	FailedRetrieveBlock time.Duration
	// DialogsPerSource caps the calls one source holds with the server at
	// once (parked, retrieved, or being set up). An INVITE beyond it gets
	// 503 Service Unavailable with Retry-After. 0 means 1,000.
	DialogsPerSource int
	// SubscriptionsPerSource caps the BLF service subscriptions one source holds.
	// A SUBSCRIBE beyond it gets 503 with Retry-After. 0 means 200 (a
	// phone watches a few orbits; an attendant console maybe a hundred).
	SubscriptionsPerSource int
	// Trusted sources are exempt from every limit above.
	Trusted []netip.Prefix
}

// The defaults of Limits.
const (
	DefaultFailedRetrieves        = 20
	DefaultFailedRetrieveWindow   = time.Minute
	DefaultFailedRetrieveBlock    = 5 * time.Minute
	DefaultDialogsPerSource       = 1000
	DefaultSubscriptionsPerSource = 200
)

// maxTrackedSources bounds the table of failed retrieves, which a flood of
// spoofed UDP sources could otherwise grow without end. When it is full of
// live entries new sources are not tracked (the limiter fails open rather
// than blocking a legitimate phone on a guess).
const maxTrackedSources = 10000

// withDefaults fills zero fields with the defaults and checks the rest.
func (l Limits) withDefaults() (Limits, error) {
	fill := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	fill(&l.FailedRetrieves, DefaultFailedRetrieves)
	fill(&l.DialogsPerSource, DefaultDialogsPerSource)
	fill(&l.SubscriptionsPerSource, DefaultSubscriptionsPerSource)
	if l.FailedRetrieveWindow == 0 {
		l.FailedRetrieveWindow = DefaultFailedRetrieveWindow
	}
	if l.FailedRetrieveBlock == 0 {
		l.FailedRetrieveBlock = DefaultFailedRetrieveBlock
	}
	if l.FailedRetrieveWindow < 0 {
		return l, &ConfigError{"Config.Limits.FailedRetrieveWindow", l.FailedRetrieveWindow, fmt.Sprintf("must be positive, or 0 for %v", DefaultFailedRetrieveWindow)}
	}
	if l.FailedRetrieveBlock < 0 {
		return l, &ConfigError{"Config.Limits.FailedRetrieveBlock", l.FailedRetrieveBlock, fmt.Sprintf("must be positive, or 0 for %v", DefaultFailedRetrieveBlock)}
	}
	trusted, err := maskedPrefixes("Config.Limits.Trusted", l.Trusted)
	l.Trusted = trusted
	return l, err
}

// maskedPrefixes checks a list of trusted prefixes and returns a copy with
// each masked, so that Contains compares like with like; field names the
// list in the error.
func maskedPrefixes(field string, ps []netip.Prefix) ([]netip.Prefix, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		if !p.IsValid() {
			return nil, &ConfigError{fmt.Sprintf("%s[%d]", field, i), p, "must be a valid prefix, such as 10.0.0.0/8"}
		}
		out[i] = p.Masked()
	}
	return out, nil
}

// sourceGuard enforces Limits for the server: the failed-retrieve table
// and the count of dialogs per source. Subscriptions are counted by the BLF service
// with the same trust rule (trusts).
type sourceGuard struct {
	limits Limits

	mu       sync.Mutex
	failures map[netip.Addr]*failureRecord
	dialogs  map[netip.Addr]int
}

// failureRecord is one source's 404s in the current window, and the end of
// its block if it went over.
type failureRecord struct {
	windowStart  time.Time
	count        int
	blockedUntil time.Time
}

func newSourceGuard(l Limits) *sourceGuard {
	return &sourceGuard{limits: l, failures: make(map[netip.Addr]*failureRecord), dialogs: make(map[netip.Addr]int)}
}

// trusts reports whether src is exempt from the limits: a trusted prefix,
// or no address at all (a request that did not come over the network).
func trusts(trusted []netip.Prefix, src netip.Addr) bool {
	if !src.IsValid() {
		return true
	}
	for _, p := range trusted {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// blocked reports whether src is refused retrieves now, and until when.
func (g *sourceGuard) blocked(src netip.Addr) (bool, time.Time) {
	if g.limits.FailedRetrieves < 0 || trusts(g.limits.Trusted, src) {
		return false, time.Time{}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.failures[src]
	if r == nil {
		return false, time.Time{}
	}
	now := time.Now()
	if now.Before(r.blockedUntil) {
		return true, r.blockedUntil
	}
	return false, time.Time{}
}

// failedRetrieve counts a 404 answered to src and reports whether that
// takes it over the limit (it is blocked from now on).
func (g *sourceGuard) failedRetrieve(src netip.Addr) bool {
	if g.limits.FailedRetrieves < 0 || trusts(g.limits.Trusted, src) {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	r := g.failures[src]
	if r == nil {
		if len(g.failures) >= maxTrackedSources {
			g.pruneLocked(now)
			if len(g.failures) >= maxTrackedSources {
				return false
			}
		}
		r = &failureRecord{windowStart: now}
		g.failures[src] = r
	}
	if now.Sub(r.windowStart) >= g.limits.FailedRetrieveWindow {
		r.windowStart, r.count = now, 0
	}
	r.count++
	if r.count >= g.limits.FailedRetrieves && !now.Before(r.blockedUntil) {
		r.blockedUntil = now.Add(g.limits.FailedRetrieveBlock)
		r.windowStart, r.count = now, 0 // counting starts afresh after the block
		return true
	}
	return false
}

// pruneLocked forgets sources whose window and block have both passed.
func (g *sourceGuard) pruneLocked(now time.Time) {
	for src, r := range g.failures {
		if now.Sub(r.windowStart) >= g.limits.FailedRetrieveWindow && !now.Before(r.blockedUntil) {
			delete(g.failures, src)
		}
	}
}

// admitDialog counts one more dialog for src, or reports false when src
// holds DialogsPerSource already. Every true is matched by releaseDialog.
func (g *sourceGuard) admitDialog(src netip.Addr) bool {
	if g.limits.DialogsPerSource < 0 || trusts(g.limits.Trusted, src) {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dialogs[src] >= g.limits.DialogsPerSource {
		return false
	}
	g.dialogs[src]++
	return true
}

// releaseDialog gives back a dialog admitDialog counted.
func (g *sourceGuard) releaseDialog(src netip.Addr) {
	if g.limits.DialogsPerSource < 0 || trusts(g.limits.Trusted, src) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dialogs[src]--; g.dialogs[src] <= 0 {
		delete(g.dialogs, src)
	}
}

// requestSource returns the IP address a request came from (the transport's
// peer, not its Via, which the sender writes), unmapped from IPv4-in-IPv6;
// the zero Addr when it is unknown. It is what Limits and
// park.RetrieveRequest.Source are keyed on.
func requestSource(req *sip.Request) netip.AddrPort {
	// MessageData.Source is the transport's peer; Request.Source would fall
	// back to the Via header, which the sender writes.
	ap, err := netip.ParseAddrPort(req.MessageData.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// retryAfter is the Retry-After of a 503 for a per-source limit: the
// phone's own calls ending frees the slot, so a short wait is worth a try.
func retryAfter() sip.Header { return sip.NewHeader("Retry-After", "30") }

// blockedWarning words the 403 of a blocked source.
func blockedWarning(src netip.Addr, until time.Time) sip.Header {
	secs := int((time.Until(until) + time.Second - 1) / time.Second)
	return warning(fmt.Sprintf("too many failed retrieves from %s; refused for another %d s", src, max(secs, 1)))
}
