package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// abuseFlags are the flags that keep strangers out of parked calls: who may
// retrieve, who is exempt from the per-source limits, and the limits
// themselves. sipadapter.Limits documents each; 0 turns a limit off here,
// because a flag has no "unset".
type abuseFlags struct {
	allow, trust        string
	failedRetrieves     int
	sourceDialogs       int
	sourceSubscriptions int
	maxMessage          int
	lateOffer           bool
}

func registerAbuseFlags(fs *flag.FlagSet) *abuseFlags {
	a := &abuseFlags{}
	fs.StringVar(&a.allow, "allow", "", "retrieve only from these `prefixes` (CIDR or IP, comma separated); others get 403. Empty: anyone")
	fs.StringVar(&a.trust, "trust", "", "`prefixes` (CIDR or IP, comma separated) exempt from the per-source limits: the PBX that carries everyone's calls")
	fs.IntVar(&a.failedRetrieves, "failed-retrieves", sipadapter.DefaultFailedRetrieves,
		fmt.Sprintf("404s per source within %v before its retrieves get 403 for %v (orbit guessing); 0: no limit", sipadapter.DefaultFailedRetrieveWindow, sipadapter.DefaultFailedRetrieveBlock))
	fs.IntVar(&a.sourceDialogs, "source-dialogs", sipadapter.DefaultDialogsPerSource, "calls one source may hold at once, beyond which 503; 0: no limit")
	fs.IntVar(&a.sourceSubscriptions, "source-subscriptions", sipadapter.DefaultSubscriptionsPerSource, "BLF subscriptions one source may hold, beyond which 503; 0: no limit")
	fs.BoolVar(&a.lateOffer, "late-offer", false, "accept INVITEs without SDP (delayed offer, as CUCM trunks send): offer in the 200, answer in the ACK. Off: 488, which is also what keeps svwar's INVITEs harmless; pair it with -allow or -trust")
	fs.IntVar(&a.maxMessage, "max-message", sipadapter.DefaultMaxMessageSize, "largest SIP message read, in `bytes` (1024-32768)")
	return a
}

// apply checks the flags and sets them on cfg; errors name the flag.
func (a *abuseFlags) apply(cfg *sipadapter.Config) error {
	allow, err := parsePrefixes("-allow", a.allow)
	if err != nil {
		return err
	}
	if len(allow) > 0 {
		cfg.Park.AuthorizeRetrieve = park.AllowFrom(allow...)
	}
	if cfg.Limits.Trusted, err = parsePrefixes("-trust", a.trust); err != nil {
		return err
	}
	for _, l := range []struct {
		name  string
		value int
		to    *int
	}{
		{"-failed-retrieves", a.failedRetrieves, &cfg.Limits.FailedRetrieves},
		{"-source-dialogs", a.sourceDialogs, &cfg.Limits.DialogsPerSource},
		{"-source-subscriptions", a.sourceSubscriptions, &cfg.Limits.SubscriptionsPerSource},
	} {
		switch {
		case l.value < 0:
			return fmt.Errorf("%s %d: must be 0 (no limit) or more", l.name, l.value)
		case l.value == 0:
			*l.to = -1 // sipadapter's "off"
		default:
			*l.to = l.value
		}
	}
	if a.maxMessage < 1024 || a.maxMessage > 32<<10 {
		return fmt.Errorf("-max-message %d: must be between 1024 and 32768 bytes", a.maxMessage)
	}
	cfg.MaxMessageSize = a.maxMessage
	cfg.AcceptLateOffer = a.lateOffer
	return nil
}

// print writes the effective settings for -check.
func (a *abuseFlags) print(w io.Writer) {
	or := func(s, empty string) string {
		if s == "" {
			return empty
		}
		return s
	}
	limit := func(n int) string {
		if n == 0 {
			return "no limit"
		}
		return fmt.Sprint(n)
	}
	fmt.Fprintf(w, "allow       %s\n", or(a.allow, "(anyone may retrieve)"))
	fmt.Fprintf(w, "trust       %s\n", or(a.trust, "(none)"))
	fmt.Fprintf(w, "failed-retrieves %s per source per %v, then 403 for %v\n", limit(a.failedRetrieves), sipadapter.DefaultFailedRetrieveWindow, sipadapter.DefaultFailedRetrieveBlock)
	fmt.Fprintf(w, "source-dialogs %s\n", limit(a.sourceDialogs))
	fmt.Fprintf(w, "source-subscriptions %s\n", limit(a.sourceSubscriptions))
	fmt.Fprintf(w, "max-message %d bytes\n", a.maxMessage)
	late := "off (INVITE without SDP: 488)"
	if a.lateOffer {
		late = "on (offer in the 200, answer in the ACK)"
	}
	fmt.Fprintf(w, "late-offer  %s\n", late)
}

// parsePrefixes reads a comma-separated list of CIDR prefixes or bare
// addresses (a host prefix each).
func parsePrefixes(flagName, s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		addr, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %q is neither a CIDR prefix (10.0.0.0/8) nor an IP address", flagName, s, item)
		}
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}
