// Package parkflags is the command line of call park, shared by the
// examples that run a lot: parkserver and pbx take the same flags for the
// park extension, the orbits, Lync Server 2013's timers, the fallback, music on hold
// and RTP, and refuse bad values with the same one-line errors.
package parkflags

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// Flags are the parsed values, before Resolve checks them.
type Flags struct {
	MediaIP, RTPPorts, ParkExt, Orbits, Policy string
	Timeout, RecallRing, Drain                 time.Duration
	Attempts                                   int
	Fallback, MOH                              string
	AnnounceParked                             bool
	MaxPages                                   int
	Announce, Prompts, Notify, Page            string
}

// Register defines the flags on fs with the contract's defaults.
func Register(fs *flag.FlagSet) *Flags {
	f := new(Flags)
	fs.StringVar(&f.MediaIP, "media-ip", "", "`address` written into SDP c= lines (default: the listen IP)")
	fs.StringVar(&f.RTPPorts, "rtp-ports", "20000-29999", "local UDP `ports` for RTP, one per call leg")
	fs.StringVar(&f.ParkExt, "park-ext", sipadapter.DefaultParkExtension, "the park `extension`: dial or transfer here to park")
	fs.StringVar(&f.Orbits, "orbits", park.DefaultOrbits, "orbit `ranges`, comma separated (e.g. *7000-*7099,#1000-#1999,7000-7999)")
	fs.StringVar(&f.Policy, "policy", "lru", "orbit choice: lru, lowest or random")
	fs.DurationVar(&f.Timeout, "timeout", park.DefaultPickupTimeout, "pickup timeout before a recall: 10s to 10m")
	fs.IntVar(&f.Attempts, "attempts", park.DefaultMaxPickupAttempts, "recalls to the parker: 1 to 10")
	fs.DurationVar(&f.RecallRing, "recall-ring", park.DefaultRecallRingTime, "how long each recall rings the parker")
	fs.StringVar(&f.Fallback, "fallback", "", "sip: `URI` to ring after the last recall; empty: disconnect")
	fs.StringVar(&f.MOH, "moh", "default", "music on hold: default, none, or a WAV file `path`")
	fs.StringVar(&f.Announce, "announce", "parker", "who hears the orbit spoken when a call is parked by calling the park extension: parker (the caller, the parker's consult call of an attended transfer), or none")
	fs.StringVar(&f.Page, "page", "", "sip: `URIs`, comma separated, paged on each park: called with auto-answer headers, told \"call parked at\" and the orbit, hung up; a page not answered in 5 s is given up, and none delays a park")
	fs.IntVar(&f.MaxPages, "max-pages", sipadapter.DefaultMaxPages, "at most this many -page calls under way at once; a park beyond it pages nobody")
	fs.StringVar(&f.Notify, "notify", "", "sip: `URIs`, comma separated (an IM group, a chat bridge), sent a MESSAGE on each park and each end of a park: who, where, by whom, how it ended")
	fs.BoolVar(&f.AnnounceParked, "announce-parked", false, "say \"you are parked at\" and the orbit to each parked party, once, before its music")
	fs.StringVar(&f.Prompts, "prompts", "", "`directory` of WAV files replacing spoken prompts by name (0.wav-9.wav, star.wav, pound.wav, parked-at.wav, call-parked-at.wav, call-for-you-on.wav, you-are-parked-at.wav, from.wav); empty: the built-in English voice")
	fs.DurationVar(&f.Drain, "drain", DefaultDrain, "on SIGTERM or SIGINT, how long calls still connected through the program (retrieved, recalled) may go on before they get BYE: 0s to 1h; a second signal ends them at once")
	return f
}

// DefaultDrain is -drain's default: time for a call retrieved just before
// a restart to finish, as Asterisk's "core stop gracefully" waits.
const DefaultDrain = 60 * time.Second

// MaxDrain bounds -drain.
const MaxDrain = time.Hour

// Settings are the checked values.
type Settings struct {
	Listen                 netip.AddrPort
	MediaIP                netip.Addr // zero: the listen IP
	RTPPortMin, RTPPortMax int
	ParkExtension          string
	Orbits                 *orbit.Table
	Policy                 orbit.Policy
	// Park has everything but the Dialer and the allocator, which the
	// program supplies.
	Park park.Config
	// Drain bounds the graceful shutdown (Drain).
	Drain time.Duration
	// Announcements are what the program says to whom.
	Announcements sipadapter.Announcements
	// Notify are the -notify URIs.
	Notify []string
	// Paging is -page.
	Paging sipadapter.Paging
}

// Resolve checks the flags, with listen (the -listen flag's value) for the
// addresses; each error names the flag and the rule, on one line.
func (f *Flags) Resolve(listen string, logger *slog.Logger) (Settings, error) {
	var s Settings
	var err error
	if s.Listen, err = netip.ParseAddrPort(listen); err != nil {
		return s, fmt.Errorf("-listen %q: want IP:port, such as 127.0.0.1:5060", listen)
	}
	if f.MediaIP != "" {
		if s.MediaIP, err = netip.ParseAddr(f.MediaIP); err != nil || s.MediaIP.IsUnspecified() {
			return s, fmt.Errorf("-media-ip %q: want the IP address phones reach for RTP", f.MediaIP)
		}
	} else if s.Listen.Addr().IsUnspecified() {
		return s, fmt.Errorf("-media-ip: -listen %s is every address, so name the address phones reach for RTP", s.Listen)
	}
	lo, hi, ok := strings.Cut(f.RTPPorts, "-")
	if s.RTPPortMin, err = strconv.Atoi(lo); !ok || err != nil {
		return s, fmt.Errorf("-rtp-ports %q: want LOW-HIGH, such as 20000-29999", f.RTPPorts)
	}
	if s.RTPPortMax, err = strconv.Atoi(hi); err != nil || s.RTPPortMin < 1024 || s.RTPPortMax > 65535 || s.RTPPortMin > s.RTPPortMax {
		return s, fmt.Errorf("-rtp-ports %q: want LOW-HIGH within 1024-65535, low end first", f.RTPPorts)
	}
	if !ValidExtension(f.ParkExt) {
		return s, fmt.Errorf("-park-ext %q: want a dialable extension such as 700", f.ParkExt)
	}
	s.ParkExtension = f.ParkExt
	if s.Orbits, err = orbit.ParseTable(f.Orbits); err != nil {
		return s, fmt.Errorf("-orbits: %w", err)
	}
	if len(s.Orbits.Pools()) != 1 || s.Orbits.Pools()[0] != "" {
		return s, fmt.Errorf("-orbits %q: pool names (pool=range) are for shared tables; a single server serves plain ranges", f.Orbits)
	}
	if e, ok := s.Orbits.Lookup(orbit.Orbit(f.ParkExt)); ok {
		return s, fmt.Errorf("-park-ext %q: lies inside the orbit range %s; the park extension must be outside every range", f.ParkExt, e.Range)
	}
	if s.Policy, err = orbit.ParsePolicy(f.Policy); err != nil {
		return s, fmt.Errorf("-policy %q: want lru, lowest or random", f.Policy)
	}
	s.Park = park.Config{
		PickupTimeout:     f.Timeout,
		MaxPickupAttempts: f.Attempts,
		RecallRingTime:    f.RecallRing,
		FallbackURI:       f.Fallback,
		Logger:            logger,
	}
	// The limits are park's; they are checked here too because a flag's 0
	// is a value to refuse, where park.Config's 0 means "the default".
	if f.Timeout < park.MinPickupTimeout || f.Timeout > park.MaxPickupTimeout {
		return s, fmt.Errorf("-timeout %v: must be between %v and %v", f.Timeout, park.MinPickupTimeout, park.MaxPickupTimeout)
	}
	if f.Attempts < 1 || f.Attempts > park.MaxMaxPickupAttempts {
		return s, fmt.Errorf("-attempts %d: must be between 1 and %d", f.Attempts, park.MaxMaxPickupAttempts)
	}
	if f.RecallRing < park.MinRecallRingTime || f.RecallRing > park.MaxRecallRingTime {
		return s, fmt.Errorf("-recall-ring %v: must be between %v and %v", f.RecallRing, park.MinRecallRingTime, park.MaxRecallRingTime)
	}
	if f.Drain < 0 || f.Drain > MaxDrain {
		return s, fmt.Errorf("-drain %v: must be between 0s and %v", f.Drain, MaxDrain)
	}
	s.Drain = f.Drain
	if f.Fallback != "" && !park.IsSIPURI(f.Fallback) {
		return s, fmt.Errorf("-fallback %q: must be a sip: URI such as sip:operator@10.0.0.5, or empty", f.Fallback)
	}
	switch f.Announce {
	case "parker":
		s.Announcements.Parker = true
	case "none":
	default:
		return s, fmt.Errorf("-announce %q: want parker or none", f.Announce)
	}
	s.Announcements.Parked = f.AnnounceParked
	if s.Notify, err = sipURIs("-notify", f.Notify, "sip:parking@chat.example.com"); err != nil {
		return s, err
	}
	if s.Paging.URIs, err = sipURIs("-page", f.Page, "sip:overhead@10.0.0.9"); err != nil {
		return s, err
	}
	if f.MaxPages < 1 {
		return s, fmt.Errorf("-max-pages %d: must be 1 or more", f.MaxPages)
	}
	s.Paging.MaxPages = f.MaxPages
	if f.Prompts != "" {
		if s.Announcements.Prompts, err = media.LoadPrompts(f.Prompts); err != nil {
			return s, fmt.Errorf("-prompts: %w", err)
		}
	}
	switch f.MOH {
	case "default":
	case "none":
		s.Park.DisableMusicOnHold = true
	default:
		clip, err := media.LoadWAV(f.MOH)
		if err != nil {
			return s, fmt.Errorf("-moh: %w", err)
		}
		s.Park.MusicOnHold = clip
	}
	return s, nil
}

// sipURIs reads a flag's comma separated sip: URIs.
func sipURIs(flag, value, example string) ([]string, error) {
	var out []string
	for _, u := range strings.Split(value, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if !park.IsSIPURI(u) {
			return nil, fmt.Errorf("%s %q: each must be a sip: URI such as %s", flag, u, example)
		}
		out = append(out, u)
	}
	return out, nil
}

// Print writes the effective park settings, one per line, for -check.
func (f *Flags) Print(w io.Writer, s Settings, pc park.Config) {
	mediaIP := s.Listen.Addr().String()
	if s.MediaIP.IsValid() {
		mediaIP = s.MediaIP.String()
	}
	fmt.Fprintf(w, "media-ip    %s\n", mediaIP)
	fmt.Fprintf(w, "rtp-ports   %d-%d\n", s.RTPPortMin, s.RTPPortMax)
	fmt.Fprintf(w, "park-ext    %s\n", s.ParkExtension)
	total := 0
	for _, r := range s.Orbits.Ranges("") {
		fmt.Fprintf(w, "orbits      %s (%d orbits)\n", r, r.Len())
		total += r.Len()
	}
	fmt.Fprintf(w, "policy      %s\n", f.Policy)
	fmt.Fprintf(w, "timeout     %v\n", pc.PickupTimeout)
	fmt.Fprintf(w, "attempts    %d\n", pc.MaxPickupAttempts)
	fmt.Fprintf(w, "recall-ring %v\n", pc.RecallRingTime)
	fallback := pc.FallbackURI
	if fallback == "" {
		fallback = "(none: disconnect after the last recall)"
	}
	fmt.Fprintf(w, "fallback    %s\n", fallback)
	moh := f.MOH
	if f.MOH == "default" {
		moh = "default (built-in music)"
	}
	fmt.Fprintf(w, "moh         %s\n", moh)
	fmt.Fprintf(w, "drain       %v\n", s.Drain)
	prompts := "built-in (English, espeak-ng)"
	if f.Prompts != "" {
		prompts = f.Prompts + " (over the built-in ones)"
	}
	fmt.Fprintf(w, "announce    %s\n", f.Announce)
	fmt.Fprintf(w, "notify      %s\n", cmp.Or(strings.Join(s.Notify, ", "), "(none)"))
	fmt.Fprintf(w, "page        %s (at most %d at once)\n", cmp.Or(strings.Join(s.Paging.URIs, ", "), "(none)"), s.Paging.MaxPages)
	fmt.Fprintf(w, "announce-parked %t\n", s.Announcements.Parked)
	fmt.Fprintf(w, "prompts     %s\n", prompts)
	fmt.Fprintf(w, "total       %d orbits\n", total)
}

// LogEvent logs what the SIP side cannot see: recalls and the fallback
// ringing, failing, being answered, and calls dropped or lost. Parks,
// retrieves, hang-ups, takeovers and refusals are logged where the SIP
// request is served, so each happening has one line; in a cluster, at the
// node where it happened (other nodes' events are not logged again).
func LogEvent(l *slog.Logger, e park.Event) {
	if e.Call.Node != "" {
		return
	}
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
		case park.Lost:
			l.Warn("call lost", append(attrs, "outcome", e.Outcome, "why", e.Err)...)
		}
	}
}

// ValidExtension accepts what a phone can dial as a SIP user part: digits,
// letters, * # + . _ -.
func ValidExtension(s string) bool {
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
