package sipadapter

import (
	"log/slog"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/orbit"
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

// Warning is a Warning header (RFC 3261 §20.43) carrying why a request was
// refused, for the people reading a trace.
func Warning(text string) sip.Header {
	return sip.NewHeader("Warning", `399 callpark "`+sanitize(text)+`"`)
}

// userURI is the URI of a user of ours, sip:user@host:port: the park
// extension, an orbit, a BLF entity.
func userURI(user string, addr netip.AddrPort) string {
	return "sip:" + user + "@" + addr.String()
}

// sipURI is userURI for headers: From and Contact of our requests.
func sipURI(user string, addr netip.AddrPort) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: addr.Addr().String(), Port: int(addr.Port())}
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
