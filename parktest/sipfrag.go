package parktest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Sipfrag is a message/sipfrag body (RFC 3420) holding a SIP status line and
// header lines: how a NOTIFY for a REFER reports progress (RFC 3515 §2.4.5),
// "SIP/2.0 200 OK" then "X-Park-Orbit: 701" for a re-park.
type Sipfrag struct {
	Code    int             // the status code, 100 to 699
	Reason  string          // the reason phrase, possibly empty
	Headers []SipfragHeader // the header lines, in order
}

// SipfragHeader is one header line of a sipfrag.
type SipfragHeader struct {
	Name, Value string
}

// Header returns the value of the first header named name
// (case-insensitive), empty if none.
func (f Sipfrag) Header(name string) string {
	for _, h := range f.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// ParseSipfrag parses a message/sipfrag body that starts with a status line.
// Lines may end in CRLF or LF; an empty line ends the headers (a body after
// it is ignored); a line starting with white space continues the previous
// header (RFC 3261 §7.3.1). Errors wrap ErrBadSipfrag and quote the line at
// fault.
func ParseSipfrag(body []byte) (Sipfrag, error) {
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	var f Sipfrag
	status := lines[0]
	version, rest, ok := strings.Cut(status, " ")
	if !ok || !strings.EqualFold(version, "SIP/2.0") {
		return Sipfrag{}, fmt.Errorf("%w: status line %q: want SIP/2.0 CODE REASON", ErrBadSipfrag, truncate(status))
	}
	codeText, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || len(codeText) != 3 || code < 100 || code > 699 {
		return Sipfrag{}, fmt.Errorf("%w: status code %q: want 100 to 699", ErrBadSipfrag, truncate(codeText))
	}
	if strings.ContainsAny(reason, "\r\x00") {
		return Sipfrag{}, fmt.Errorf("%w: reason phrase %q", ErrBadSipfrag, truncate(reason))
	}
	f.Code, f.Reason = code, strings.TrimSpace(reason)
	for _, line := range lines[1:] {
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(f.Headers) == 0 {
				return Sipfrag{}, fmt.Errorf("%w: continuation line %q before any header", ErrBadSipfrag, truncate(line))
			}
			if strings.ContainsAny(line, "\r\x00") {
				// Checked here as for a header's first line: a folded value
				// holding a CR would be written back as a broken sipfrag.
				return Sipfrag{}, fmt.Errorf("%w: continuation of %s holds a control character", ErrBadSipfrag, f.Headers[len(f.Headers)-1].Name)
			}
			last := &f.Headers[len(f.Headers)-1]
			last.Value = strings.TrimSpace(last.Value + " " + strings.TrimSpace(line))
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name = strings.TrimRight(name, " \t")
		if !ok || !isToken(name) {
			return Sipfrag{}, fmt.Errorf("%w: header line %q: want NAME: VALUE", ErrBadSipfrag, truncate(line))
		}
		if strings.ContainsAny(value, "\r\x00") {
			return Sipfrag{}, fmt.Errorf("%w: header %s holds a control character", ErrBadSipfrag, name)
		}
		f.Headers = append(f.Headers, SipfragHeader{Name: name, Value: strings.TrimSpace(value)})
	}
	return f, nil
}

// String writes the sipfrag back in its wire form, CRLF line ends.
func (f Sipfrag) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", f.Code, f.Reason)
	for _, h := range f.Headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h.Name, h.Value)
	}
	return b.String()
}

// truncate shortens outside input quoted in an error message.
func truncate(s string) string {
	const limit = 60
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
