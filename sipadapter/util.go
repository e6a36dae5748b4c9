package sipadapter

import (
	"strings"

	"github.com/emiago/sipgo/sip"
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
