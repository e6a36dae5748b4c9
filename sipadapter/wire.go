package sipadapter

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// The helpers in this file are the park server's own answers on the wire,
// exported so that a host PBX that parks, retrieves and transfers in its own
// SIP handlers answers exactly as the server does (SIP-CONTRACT.md) without
// a second copy to keep in step.

// statusFor maps an error of park.Lot (Park, Retrieve, Call.Replace) or of
// PortPool.Acquire to the contract's SIP answer: the status code, its reason
// phrase and the headers that go with it. Errors are matched with errors.Is,
// so wrapped errors map as the sentinel they wrap.
//
//   - park.ErrLotFull, park.ErrOrbitInUse: 486 Busy Here with a warning
//     saying which, and a Reason carrying the error text, so that a phone's
//     log tells a full lot from an occupied orbit.
//   - park.ErrUnknownOrbit, park.ErrNotParked, park.ErrStale: 404 Not Found;
//     nothing waits there, whatever the reason.
//   - park.ErrNotAuthorized: 403 Forbidden with a warning carrying the
//     refusal (Config.AuthorizeRetrieve said no).
//   - park.ErrClosed: 503 Service Unavailable with Retry-After, since the
//     lot is shutting down and another node (or this one, restarted) will
//     take the call.
//   - orbit.ErrUnavailable: 503 Service Unavailable with Retry-After: 5,
//     the cluster's store (Redis) cannot be reached; nothing was taken.
//   - ErrNoRTPPort: 503 Service Unavailable with a warning; retrying at
//     once is fine, so no Retry-After.
//   - anything else: 500 Server Internal Error.
//
// A host uses code and reason for a response (adding headers to it) or, for
// a REFER, for the sipfrag of its final NOTIFY (statusSipfrag).
func statusFor(err error) (code int, reason string, headers []sip.Header) {
	switch {
	case errors.Is(err, park.ErrLotFull):
		return sip.StatusBusyHere, "Busy Here", busyHeaders("park lot full: no free orbit", err)
	case errors.Is(err, park.ErrOrbitInUse):
		return sip.StatusBusyHere, "Busy Here", busyHeaders("orbit occupied", err)
	case errors.Is(err, park.ErrUnknownOrbit), errors.Is(err, park.ErrNotParked), errors.Is(err, park.ErrStale):
		return sip.StatusNotFound, "Not Found", nil
	case errors.Is(err, park.ErrNotAuthorized):
		return sip.StatusForbidden, "Forbidden", []sip.Header{warning(err.Error())}
	case errors.Is(err, park.ErrClosed):
		return sip.StatusServiceUnavailable, "Service Unavailable", []sip.Header{sip.NewHeader("Retry-After", "30")}
	case errors.Is(err, orbit.ErrUnavailable):
		return sip.StatusServiceUnavailable, "Service Unavailable", []sip.Header{sip.NewHeader("Retry-After", "5"), warning("the shared park lot cannot be reached")}
	case errors.Is(err, ErrNoRTPPort):
		return sip.StatusServiceUnavailable, "Service Unavailable", []sip.Header{warning("no free RTP port")}
	}
	return sip.StatusInternalServerError, "Server Internal Error", nil
}

// busyHeaders are the headers of a 486: a warning for people reading a
// trace, and a Reason (RFC 3326) with the lot's own words for the phone.
func busyHeaders(why string, err error) []sip.Header {
	return []sip.Header{
		warning(why),
		sip.NewHeader("Reason", `SIP;cause=486;text="`+sanitize(err.Error())+`"`),
	}
}

// referredBy returns the URI of a request's Referred-By header (RFC 3892),
// or "" without one. The park server takes it as the parker, the party a
// recall rings and the "Parked at" MESSAGE goes to. Both the name-addr form
// (`"Bob" <sip:bob@host>;tag=x`) and a bare URI (linphone) are read.
func referredBy(req *sip.Request) string {
	if h := req.GetHeader("Referred-By"); h != nil {
		return parseURIValue(h.Value())
	}
	return ""
}

// parseReplaces reads a Replaces header value (RFC 3891):
// call-id;to-tag=<tag>;from-tag=<tag>, with parameters in any order and of
// any case; others (early-only) are ignored. It also reads the form a
// Refer-To URI carries it in (Refer-To: <sip:700@host?Replaces=...>), which
// is %-escaped, so the value is unescaped first; sipgo hands that header
// over still escaped. A Call-ID holding a literal '%' followed by two hex
// digits is therefore read unescaped: RFC 3261 allows one, but no phone
// known to us makes one, while every transfer carries the escaped form.
//
// The tags are named as the sender of the Replaces sees the dialog: for a
// call the park server answered, to-tag is the server's tag and from-tag
// the phone's. An error names what is missing.
func parseReplaces(value string) (callID, toTag, fromTag string, err error) {
	raw := value
	// A bad escape means the value was not escaped after all: it is read
	// as it is, a '%' being part of the Call-ID.
	if unescaped, uerr := url.PathUnescape(value); uerr == nil {
		value = unescaped
	}
	callID, params, _ := strings.Cut(value, ";")
	callID = strings.TrimSpace(callID)
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "to-tag":
			toTag = strings.TrimSpace(v)
		case "from-tag":
			fromTag = strings.TrimSpace(v)
		}
	}
	var missing []string
	if callID == "" {
		missing = append(missing, "call-id")
	}
	if toTag == "" {
		missing = append(missing, "to-tag")
	}
	if fromTag == "" {
		missing = append(missing, "from-tag")
	}
	if len(missing) > 0 {
		return "", "", "", fmt.Errorf("sipadapter: Replaces %q: no %s", raw, strings.Join(missing, ", no "))
	}
	return callID, toTag, fromTag, nil
}

// parkedSipfrag is the sipfrag (RFC 3420) of the final NOTIFY of a REFER
// that parked its call: 200 OK, and X-Park-Orbit so that the transferring
// phone can show where the call waits, as the 200 OK of a park INVITE does.
func parkedSipfrag(o orbit.Orbit) string {
	return "SIP/2.0 200 OK\r\nX-Park-Orbit: " + string(o) + "\r\n"
}

// statusSipfrag is the sipfrag (RFC 3420) of a REFER NOTIFY reporting a
// status line only: 100 Trying first, then a refusal (with statusFor's code
// and reason). Control characters in reason become spaces: the body must
// stay one status line.
func statusSipfrag(code int, reason string) string {
	reason = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, reason)
	return "SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n"
}
