package sipadapter

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
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

// warning is a Warning header (RFC 3261 §20.43) carrying why a request was
// refused, for the people reading a trace.
func warning(text string) sip.Header {
	return sip.NewHeader("Warning", `399 callpark "`+sanitize(text)+`"`)
}

// referredBy is the URI of a request's Referred-By, or "" without one.
func referredBy(req *sip.Request) string {
	if h := req.GetHeader("Referred-By"); h != nil {
		return parseURIValue(h.Value())
	}
	return ""
}

// offerStatus maps an SDP offer error to its answer: 400 for an offer that
// cannot be parsed, 488 for one without a usable audio stream (or none).
func offerStatus(err error, body []byte) (int, string) {
	if errors.Is(err, media.ErrBadSDP) && len(body) > 0 {
		return sip.StatusBadRequest, "Bad Request"
	}
	return sip.StatusNotAcceptableHere, "Not Acceptable Here"
}
