package media

import "strings"

// scanOffer reads a session description in the strict form SIP stacks
// write (one space between fields, no blank lines, the lines a G.711 offer
// uses) straight into desc, without building pion's tree: at a thousand
// calls a second pion's parse was 5 % of a park server's CPU (BENCHMARKS.md).
// It accepts only text that pion's parser accepts too, and fills desc as
// pionOffer would from it; anything else (other line types, loose
// whitespace, numbers pion would read differently) returns false, and pion
// decides. FuzzScanOffer checks both promises.
//
// The last line needs no line end, as in ParseOffer, which gives pion the
// text with "\r\n" added. The order of lines is pion's:
//
//	v o s [c] b* t+ a* (m (a|b|c)*)*
//
// and, as with pion, the text may end after any whole line.
func scanOffer(text string, desc *offerDesc) bool {
	*desc = offerDesc{}
	const (
		wantV = iota
		wantO
		wantS
		afterS
		afterSessionC // c or b seen: only b and t may follow
		afterT
		afterSessionA
		inMedia
	)
	state := wantV
	// One array for every section's attributes and one for the m-lines,
	// sized by counting their lines, so that appending never reallocates
	// (cur stays valid) and a parse allocates a few times, not once per
	// line.
	all := make([]offerAttr, 0, strings.Count(text, "\na="))
	desc.media = make([]offerMedia, 0, strings.Count(text, "\nm="))
	attrStart := 0
	var cur *offerMedia
	endSection := func() {
		if cur == nil {
			desc.attrs = all[attrStart:len(all):len(all)]
		} else {
			cur.attrs = all[attrStart:len(all):len(all)]
		}
		attrStart = len(all)
	}
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = strings.TrimSuffix(text[:i], "\r"), text[i+1:]
		} else {
			line, text = text, "" // the last line, without a line end
		}
		if len(line) < 2 || line[1] != '=' || strings.IndexByte(line, '\r') >= 0 {
			return false
		}
		typ, v := line[0], line[2:]
		switch {
		case state == wantV && typ == 'v':
			if v != "0" {
				return false
			}
			state = wantO
		case state == wantO && typ == 'o':
			if !scanOrigin(v, desc) {
				return false
			}
			state = wantS
		case state == wantS && typ == 's':
			state = afterS
		case state == afterS && typ == 'c':
			c, ok := scanConn(v)
			if !ok {
				return false
			}
			desc.conn = c
			state = afterSessionC
		case (state == afterS || state == afterSessionC) && typ == 'b':
			if !scanBandwidth(v) {
				return false
			}
			state = afterSessionC
		case (state == afterS || state == afterSessionC || state == afterT) && typ == 't':
			if !scanTiming(v) {
				return false
			}
			state = afterT
		case (state == afterT || state == afterSessionA) && typ == 'a':
			if len(all) == cap(all) {
				return false // not at a line start: cannot happen
			}
			all = append(all, scanAttr(v))
			state = afterSessionA
		case (state == afterT || state == afterSessionA || state == inMedia) && typ == 'm':
			if len(desc.media) == cap(desc.media) {
				return false // not at a line start: cannot happen
			}
			endSection()
			desc.media = append(desc.media, offerMedia{})
			cur = &desc.media[len(desc.media)-1]
			if !scanMediaLine(v, cur) {
				return false
			}
			state = inMedia
		case state == inMedia && typ == 'a':
			if len(all) == cap(all) {
				return false // as above
			}
			all = append(all, scanAttr(v))
		case state == inMedia && typ == 'b':
			if !scanBandwidth(v) {
				return false
			}
		case state == inMedia && typ == 'c':
			c, ok := scanConn(v)
			if !ok {
				return false
			}
			cur.conn = c // as in pion, the last c= of the section counts
		default:
			return false
		}
	}
	endSection()
	return true
}

// nextField splits off the first of v's fields, which are separated by
// exactly one space; false for an empty field or a tab.
func nextField(v string) (field, rest string, ok bool) {
	i := strings.IndexByte(v, ' ')
	if i < 0 {
		field = v
	} else {
		field, rest = v[:i], v[i+1:]
		if rest == "" {
			return "", "", false // a trailing space
		}
	}
	if field == "" || strings.IndexByte(field, '\t') >= 0 {
		return "", "", false
	}
	return field, rest, true
}

// fields splits v into exactly n fields.
func fields(v string, n int) ([6]string, bool) {
	var out [6]string
	for i := range n {
		var ok bool
		if out[i], v, ok = nextField(v); !ok {
			return out, false
		}
	}
	return out, v == ""
}

// scanUint reads 1 to 19 decimal digits: every such number fits a uint64,
// where pion's reader would wrap a longer one.
func scanUint(s string) (uint64, bool) {
	if len(s) == 0 || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func scanOrigin(v string, desc *offerDesc) bool {
	f, ok := fields(v, 6)
	if !ok || f[3] != "IN" || (f[4] != "IP4" && f[4] != "IP6") {
		return false
	}
	if desc.sessionID, ok = scanUint(f[1]); !ok {
		return false
	}
	if desc.sessionVersion, ok = scanUint(f[2]); !ok {
		return false
	}
	desc.hasOrigin = true
	return true
}

func scanConn(v string) (offerConn, bool) {
	f, ok := fields(v, 3)
	if !ok || f[0] != "IN" || (f[1] != "IP4" && f[1] != "IP6") {
		return offerConn{}, false
	}
	return offerConn{present: true, netType: f[0], addrType: f[1], address: f[2], hasAddress: true}, true
}

// scanBandwidth accepts the registered bandwidth types pion does, with a
// number; experimental (X-) ones go to pion.
func scanBandwidth(v string) bool {
	typ, n, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	switch typ {
	case "CT", "AS", "TIAS", "RS", "RR":
	default:
		return false
	}
	_, ok = scanUint(n)
	return ok
}

func scanTiming(v string) bool {
	f, ok := fields(v, 2)
	if !ok {
		return false
	}
	_, ok1 := scanUint(f[0])
	_, ok2 := scanUint(f[1])
	return ok1 && ok2
}

func scanAttr(v string) offerAttr {
	if i := strings.IndexByte(v, ':'); i > 0 {
		return offerAttr{key: v[:i], value: v[i+1:]}
	}
	return offerAttr{key: v}
}

// isSDPMedia and isSDPProto accept the media types and transport parts
// pion accepts in an m-line.
func isSDPMedia(s string) bool {
	switch s {
	case "audio", "video", "text", "application", "message":
		return true
	}
	return false
}

func isSDPProto(s string) bool {
	switch s {
	case "UDP", "RTP", "AVP", "SAVP", "SAVPF", "TLS", "DTLS", "SCTP", "AVPF", "TCP", "MSRP", "BFCP", "UDT", "IX", "MRCPv2", "FEC":
		return true
	}
	return false
}

func scanMediaLine(v string, md *offerMedia) bool {
	media, v, ok := nextField(v)
	if !ok || !isSDPMedia(media) {
		return false
	}
	port, v, ok := nextField(v)
	if !ok || len(port) > 5 {
		return false
	}
	p, ok := scanUint(port)
	if !ok || p > 65535 {
		return false
	}
	proto, v, ok := nextField(v)
	if !ok {
		return false
	}
	md.media, md.port = media, int(p)
	md.protos = strings.Split(proto, "/")
	for _, pr := range md.protos {
		if !isSDPProto(pr) {
			return false
		}
	}
	if v != "" {
		md.formats = make([]string, 0, strings.Count(v, " ")+1)
	}
	for v != "" {
		var f string
		if f, v, ok = nextField(v); !ok {
			return false
		}
		md.formats = append(md.formats, f)
	}
	return true
}
