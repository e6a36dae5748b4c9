package sipadapter

import (
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// fromURI is the From URI of a request, without tag, for logs and as the
// parked party's name.
func fromURI(req *sip.Request) string {
	if f := req.From(); f != nil {
		return f.Address.String()
	}
	return ""
}

// parseURIValue takes the URI out of a name-addr header value such as
// `"Bob" <sip:bob@example.com>;tag=x`, or returns a bare URI as it is
// (linphone sends Referred-By without brackets).
func parseURIValue(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
	}
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v)
}

// sanitize makes text safe inside a quoted header value.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < ' ' {
			return ' '
		}
		return r
	}, s)
}

// maxWarningText bounds the text of a warning. Errors may quote the
// request (a bad SDP line, a codec list), and sipgo refuses to send a UDP
// message over 1,300 bytes: an unbounded warning would turn a 400 into no
// answer at all (found by FuzzServerDatagram).
const maxWarningText = 120

// warning is a warning header (RFC 3261 §20.43) carrying why a request was
// refused, for the people reading a trace; text past 120 characters is cut
// with an ellipsis.
func warning(text string) sip.Header {
	text = sanitize(text)
	if r := []rune(text); len(r) > maxWarningText {
		text = string(r[:maxWarningText-1]) + "…"
	}
	return sip.NewHeader("Warning", `399 callpark "`+text+`"`)
}

// userURI is the URI of a user of ours, sip:user@host:port: the park
// extension, an orbit, a BLF entity. The user part is escaped, so the orbit
// #1005 is sip:%231005@host.
func userURI(user string, addr netip.AddrPort) string {
	return "sip:" + EscapeUser(user) + "@" + addr.String()
}

// sipURI is userURI for headers: From and Contact of our requests.
func sipURI(user string, addr netip.AddrPort) sip.Uri {
	return sip.Uri{Scheme: "sip", User: EscapeUser(user), Host: addr.Addr().String(), Port: int(addr.Port())}
}

// tlsURI is sipURI at the TLS address, with transport=tls: the Contact of
// a dialog or subscription made over TLS, so the peer's requests in it
// come over TLS too (RFC 3261 §19.1.4; sips: would ask it of every hop).
func tlsURI(user string, addr netip.AddrPort) sip.Uri {
	u := sipURI(user, addr)
	u.UriParams = sip.NewParams()
	u.UriParams.Add("transport", "tls")
	return u
}

// sipsURI is the Contact of a dialog or subscription whose request named
// a sips: URI: RFC 3261 §12.1.1 has it be sips: too.
func sipsURI(user string, addr netip.AddrPort) sip.Uri {
	u := sipURI(user, addr)
	u.Scheme = "sips"
	return u
}

// insecureSIPS reports whether req names a sips: Request-URI but did not
// come over TLS: RFC 3261 §26.2.2 and RFC 5630 want such a request to have
// crossed TLS on every hop, so it is refused (416) rather than served.
func insecureSIPS(req *sip.Request) bool {
	return strings.EqualFold(req.Recipient.Scheme, "sips") && !strings.EqualFold(req.Transport(), "TLS")
}

// URIUser returns the user part of u with its %-escapes decoded, the form to
// compare with an extension or orbit (a host PBX reads its Request-URIs
// with it too, so # orbits match as they do here): RFC 3261
// §19.1.2 has a phone send the orbit #1005 as sip:%231005@host (# may not
// appear bare in a user part), while sipgo hands the part over as written.
// A part with a broken escape is returned as written, and then matches no
// orbit.
func URIUser(u sip.Uri) string {
	if !strings.Contains(u.User, "%") {
		return u.User
	}
	if dec, err := url.PathUnescape(u.User); err == nil {
		return dec
	}
	return u.User
}

// EscapeUser %-escapes what RFC 3261's user part does not allow bare
// (anything but unreserved and user-unreserved characters), such as the #
// of an orbit: what a host writes into the URIs it builds.
func EscapeUser(user string) string {
	const userChars = "-_.!~*'()&=+$,;?/"
	var b strings.Builder
	for i := 0; i < len(user); i++ {
		c := user[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(userChars, c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// servesOrbit reports whether o is an orbit of table's local pool (""), the
// only one a node answers for: the others are served by other nodes.
func servesOrbit(table *orbit.Table, o orbit.Orbit) bool {
	pool, ok := table.Owner(o)
	return ok && pool == ""
}

// respond sends a response; a failure means the peer is gone, which the
// transaction layer has already noticed, so it is only logged.
func respond(log *slog.Logger, tx sip.ServerTransaction, res *sip.Response) {
	if err := tx.Respond(res); err != nil {
		log.Debug("response not sent", "status", res.StatusCode, "err", err)
	}
}

// Reply answers req with a status and headers; a response that cannot be
// sent (the peer is gone) is only logged, at Debug.
func Reply(log *slog.Logger, req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	respond(log, tx, res)
}

// fromTag is the tag of a request's From header.
func fromTag(req *sip.Request) string {
	t, _ := req.From().Params.Get("tag")
	return t
}

// ringable is uri if a recall can ring it (park.IsSIPURI), else "": the
// parker of a call is such a URI or unknown.
func ringable(uri string) string {
	if park.IsSIPURI(uri) {
		return uri
	}
	return ""
}
