package parktest

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// parseTarget parses the URI a phone is asked to call or send to, with or
// without angle brackets. Its URI headers (sip:700@host?Replaces=...) are
// taken out of the Request-URI and returned as request headers, unescaped, as
// RFC 3261 §19.1.5 asks: that is how a transferee turns a REFER's Refer-To
// into the INVITE carrying Replaces. The input may come from a peer (a
// Refer-To), so header names must be tokens and no value may hold a line
// break that would inject lines into the request.
func parseTarget(s string) (sip.Uri, []sip.Header, error) {
	text := strings.TrimSpace(s)
	if strings.HasPrefix(text, "<") && strings.HasSuffix(text, ">") {
		text = text[1 : len(text)-1]
	}
	// A URI holds no raw whitespace, control byte, '<', '>' or '"' in any
	// part (user, password, host, parameters, headers): RFC 3261 escapes
	// them. Refusing them in the text as a whole keeps every part sipgo
	// splits out, including ones this function does not look at by name,
	// from breaking the request line.
	if i := strings.IndexFunc(text, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune("<>\"", r)
	}); i >= 0 {
		return sip.Uri{}, nil, fmt.Errorf("%w: %q: byte %q at %d is not allowed in a URI", ErrBadTarget, s, text[i], i)
	}
	var u sip.Uri
	if err := sip.ParseUri(text, &u); err != nil {
		return sip.Uri{}, nil, fmt.Errorf("%w: %q: %v", ErrBadTarget, s, err)
	}
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") {
		return sip.Uri{}, nil, fmt.Errorf("%w: %q: scheme %q, want sip or sips", ErrBadTarget, s, u.Scheme)
	}
	if u.Host == "" {
		return sip.Uri{}, nil, fmt.Errorf("%w: %q: no host", ErrBadTarget, s)
	}
	var headers []sip.Header
	for _, kv := range u.Headers {
		name, err := url.PathUnescape(kv.K)
		if err != nil || !isToken(name) {
			return sip.Uri{}, nil, fmt.Errorf("%w: %q: URI header name %q is not a token", ErrBadTarget, s, kv.K)
		}
		value, err := url.PathUnescape(kv.V)
		if err != nil {
			return sip.Uri{}, nil, fmt.Errorf("%w: %q: URI header %s: %v", ErrBadTarget, s, name, err)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return sip.Uri{}, nil, fmt.Errorf("%w: %q: URI header %s holds a line break", ErrBadTarget, s, name)
		}
		headers = append(headers, sip.NewHeader(name, value))
	}
	u.Headers = nil
	return u, headers, nil
}

// isToken reports whether s is a non-empty RFC 3261 token, the syntax of a
// header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-.!%*_+`'~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// escapeURIHeaderValue %-escapes every byte of v that RFC 3261's hvalue does
// not allow unescaped (only unreserved characters pass), so that a Replaces
// value with its ';', '=' and '@' survives inside a Refer-To URI.
func escapeURIHeaderValue(v string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-_.!~*'()", c) >= 0:
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
