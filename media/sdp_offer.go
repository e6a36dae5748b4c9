package media

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
)

// offerDesc is what ParseOffer reads of a session description: filled by
// scanOffer from the strict form most SIP stacks write, without building
// pion's tree, or else from pion's parse (pionOffer), so that both give the
// same RemoteMedia and errors for the same text.
type offerDesc struct {
	hasOrigin                 bool // an o= line (pion: Origin.NetworkType set)
	sessionID, sessionVersion uint64
	conn                      offerConn // session-level c=
	attrs                     []offerAttr
	media                     []offerMedia
}

// offerMedia is one m-line and what follows it.
type offerMedia struct {
	media   string
	port    int
	protos  []string
	formats []string
	conn    offerConn
	attrs   []offerAttr
}

// offerConn is a c= line, if present; hasAddress is false for one without
// an address.
type offerConn struct {
	present, hasAddress        bool
	netType, addrType, address string
}

// offerAttr is an a= line split as pion splits it: key before the first
// colon (if it is not the first byte), value after.
type offerAttr struct{ key, value string }

// attribute returns the value of the first attribute named key.
func attribute(attrs []offerAttr, key string) (string, bool) {
	for _, a := range attrs {
		if a.key == key {
			return a.value, true
		}
	}
	return "", false
}

// ParseOffer parses an SDP offer (or any session description from a peer) and
// describes its audio stream: the first m=audio line with a non-zero port,
// PCMU or PCMA, and plain RTP (RTP/AVP, RTP/AVPF) or SRTP (RTP/SAVP,
// RTP/SAVPF) with a usable a=crypto line; failing that the first one with a
// non-zero port, which Answer will then decline (ErrNoCommonCodec,
// ErrNoCrypto). Other m-lines are remembered so that Answer can decline
// them in place, and the first usable stream of the other kind (plain when
// the described one is SRTP, or the reverse) is kept for a policy that
// wants that kind (LocalMedia.SRTP).
//
// Errors: ErrBadSDP (wrapping pion's parse error, or naming the missing or
// unusable c= line), ErrNoAudioStream.
func ParseOffer(b []byte) (*RemoteMedia, error) {
	text := string(b)
	var desc offerDesc
	if !scanOffer(text, &desc) {
		// Not in the strict form the scanner reads: pion's parser decides,
		// with its errors. It needs a line end after the last line; many
		// SIP stacks omit it.
		if !strings.HasSuffix(text, "\n") {
			text += "\r\n"
		}
		if err := pionOffer(text, &desc); err != nil {
			return nil, err
		}
	}
	return readOffer(&desc)
}

// pionOffer parses text with pion/sdp into desc.
func pionOffer(text string, desc *offerDesc) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	*desc = offerDesc{
		hasOrigin:      sd.Origin.NetworkType != "",
		sessionID:      sd.Origin.SessionID,
		sessionVersion: sd.Origin.SessionVersion,
		conn:           pionConn(sd.ConnectionInformation),
		attrs:          pionAttrs(sd.Attributes),
		media:          make([]offerMedia, len(sd.MediaDescriptions)),
	}
	for i, md := range sd.MediaDescriptions {
		desc.media[i] = offerMedia{
			media:   md.MediaName.Media,
			port:    md.MediaName.Port.Value,
			protos:  md.MediaName.Protos,
			formats: md.MediaName.Formats,
			conn:    pionConn(md.ConnectionInformation),
			attrs:   pionAttrs(md.Attributes),
		}
	}
	return nil
}

func pionConn(ci *sdp.ConnectionInformation) offerConn {
	if ci == nil {
		return offerConn{}
	}
	c := offerConn{present: true, netType: ci.NetworkType, addrType: ci.AddressType}
	if ci.Address != nil {
		c.address, c.hasAddress = ci.Address.Address, true
	}
	return c
}

func pionAttrs(attrs []sdp.Attribute) []offerAttr {
	if len(attrs) == 0 {
		return nil
	}
	out := make([]offerAttr, len(attrs))
	for i, a := range attrs {
		out[i] = offerAttr{key: a.Key, value: a.Value}
	}
	return out
}

// readOffer describes the audio stream of a parsed description: the first
// usable one (see ParseOffer), and the first usable one of the other kind
// (plain or SRTP) if there is one, for a policy that wants that kind.
func readOffer(desc *offerDesc) (*RemoteMedia, error) {
	// pion stops quietly at the end of input, so an empty body or a lone v=
	// parses; both lack the o= line every SDP has (RFC 4566 §5).
	if !desc.hasOrigin {
		return nil, fmt.Errorf("%w: no o= line", ErrBadSDP)
	}
	lines := make([]mediaLine, len(desc.media))
	firstActive, plain, secure := -1, -1, -1
	for i := range desc.media {
		md := &desc.media[i]
		lines[i] = mediaLine{media: md.media, protos: md.protos, formats: md.formats}
		if md.media != "audio" || md.port == 0 {
			continue
		}
		if firstActive < 0 {
			firstActive = i
		}
		ok, sec := rtpProto(md.protos)
		if !ok || (sec && secure >= 0) || (!sec && plain >= 0) {
			continue
		}
		if g711, _ := streamFormats(md); len(g711) == 0 {
			continue
		}
		if !sec {
			plain = i
		} else if _, err := chooseCrypto(cryptoValues(md.attrs)); err == nil {
			secure = i
		}
	}
	audio, alt := plain, secure
	if audio < 0 || (secure >= 0 && secure < plain) {
		audio, alt = secure, plain
	}
	if audio < 0 {
		audio = firstActive
	}
	if audio < 0 {
		return nil, fmt.Errorf("%w: %d m-lines, none is m=audio with a non-zero port", ErrNoAudioStream, len(desc.media))
	}
	r, err := describeStream(desc, lines, audio)
	if err != nil {
		return nil, err
	}
	if alt >= 0 {
		r.alt, _ = describeStream(desc, lines, alt) // without a usable c=, no alternative
	}
	return r, nil
}

// describeStream describes the m-line i of desc.
func describeStream(desc *offerDesc, lines []mediaLine, i int) (*RemoteMedia, error) {
	md := &desc.media[i]
	r := &RemoteMedia{
		SessionID:      desc.sessionID,
		SessionVersion: desc.sessionVersion,
		lines:          lines,
		audio:          i,
		crypto:         cryptoValues(md.attrs),
	}
	r.Formats, r.TelephoneEvent = streamFormats(md)
	addr, err := connectionAddr(desc, md)
	if err != nil {
		return nil, err
	}
	r.Addr = netip.AddrPortFrom(addr, uint16(md.port))
	r.Proto = strings.Join(md.protos, "/")
	r.Ptime = ptime(desc, md)
	r.Direction = SendRecv
	if d, ok := directionAttr(md.attrs); ok {
		r.Direction = d
	} else if d, ok := directionAttr(desc.attrs); ok {
		r.Direction = d
	}
	if addr.IsUnspecified() {
		r.Direction = directionOf(r.Direction.Sends(), false)
	}
	return r, nil
}

// cryptoValues returns the values of the a=crypto lines among attrs.
func cryptoValues(attrs []offerAttr) []string {
	var out []string
	for _, a := range attrs {
		if a.key == "crypto" {
			out = append(out, a.value)
		}
	}
	return out
}

// rtpProto reports whether protos is a transport the server speaks:
// RTP/AVP or RTP/AVPF (AVPF peers interoperate with a plain AVP endpoint,
// RFC 4585 §5), or their SRTP forms RTP/SAVP and RTP/SAVPF (secure).
func rtpProto(protos []string) (ok, secure bool) {
	if len(protos) != 2 || protos[0] != "RTP" {
		return false, false
	}
	switch protos[1] {
	case "AVP", "AVPF":
		return true, false
	case "SAVP", "SAVPF":
		return true, true
	}
	return false, false
}

// rtpmap returns the encoding of the m-line's first rtpmap for the format
// written pt ("PCMU/8000", trimmed), and whether there is one. A linear
// search: an m-line has a handful of attributes, and a map per offer cost
// more than the search.
func rtpmap(md *offerMedia, pt string) (string, bool) {
	for _, a := range md.attrs {
		if a.key != "rtpmap" {
			continue
		}
		p, enc, ok := strings.Cut(strings.TrimSpace(a.value), " ")
		if ok && p == pt {
			return strings.TrimSpace(enc), true
		}
	}
	return "", false
}

// encodingIs reports whether an rtpmap encoding, lower-cased with any
// channel count dropped, is want, which is lower-case ASCII "name/rate"
// without the letter k: then only ASCII letters can lower-case to it (the
// Kelvin sign, the one other rune that lower-cases into ASCII, becomes k),
// so comparing ASCII bytes without case is exact and allocates nothing.
func encodingIs(enc, want string) bool {
	name, rest, ok := strings.Cut(enc, "/")
	if !ok {
		return false // want has a slash
	}
	rate, _, _ := strings.Cut(rest, "/")
	wantName, wantRate, _ := strings.Cut(want, "/")
	return asciiLowerIs(name, wantName) && asciiLowerIs(rate, wantRate)
}

func asciiLowerIs(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// payloadType parses an m-line format as an RTP payload type (0-127).
func payloadType(format string) (uint8, bool) {
	pt, err := strconv.ParseUint(format, 10, 8)
	if err != nil || pt > 127 {
		return 0, false
	}
	return uint8(pt), true
}

// streamFormats lists the m-line's PCMU and PCMA formats in its order, and
// the payload type of telephone-event at 8 kHz (the only clock that fits a
// G.711 stream), or 0.
//
// A static number (below 35, RFC 3551) counts only as itself: 0 is PCMU and 8
// is PCMA unless an rtpmap names something else, and an rtpmap that moves
// G.711 onto another static number is not trusted. Dynamic numbers count by
// their rtpmap, except 72-76, which RTCP demultiplexing reserves (RFC 5761
// §4). So a negotiated format is always one an Endpoint accepts.
func streamFormats(md *offerMedia) (g711 []PayloadFormat, telephoneEvent uint8) {
	for _, f := range md.formats {
		pt, ok := payloadType(f)
		if !ok || pt >= 72 && pt <= 76 {
			continue
		}
		enc, mapped := rtpmap(md, f)
		var codec Codec
		switch {
		case pt < 35:
			codec = Codec(pt)
			if !codec.Valid() || mapped && !encodingIs(enc, strings.ToLower(codec.String())+"/8000") {
				continue
			}
		case encodingIs(enc, "pcmu/8000"):
			codec = PCMU
		case encodingIs(enc, "pcma/8000"):
			codec = PCMA
		case encodingIs(enc, "telephone-event/8000") && telephoneEvent == 0:
			telephoneEvent = pt
			continue
		default:
			continue
		}
		if !slices.ContainsFunc(g711, func(g PayloadFormat) bool { return g.Codec == codec }) {
			g711 = append(g711, PayloadFormat{PayloadType: pt, Codec: codec})
		}
	}
	return g711, telephoneEvent
}

func directionAttr(attrs []offerAttr) (Direction, bool) {
	for _, a := range attrs {
		if d, ok := parseDirectionAttr(a.key); ok {
			return d, true
		}
	}
	return 0, false
}

// ptime reads a=ptime from the m-line, else the session; values outside
// 1-1000 ms are ignored as nonsense.
func ptime(desc *offerDesc, md *offerMedia) time.Duration {
	v, ok := attribute(md.attrs, "ptime")
	if !ok {
		v, ok = attribute(desc.attrs, "ptime")
	}
	if !ok {
		return 0
	}
	ms, err := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
	if err != nil || ms == 0 || ms > 1000 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// connectionAddr returns the stream's c= address: the m-line's, else the
// session's (RFC 4566 §5.7). Host names and multicast ranges are refused: an
// RTP peer is an IP address. The address type (IP4, IP6) is not held against
// the address: the address itself is unambiguous.
func connectionAddr(desc *offerDesc, md *offerMedia) (netip.Addr, error) {
	ci := &md.conn
	if !ci.present {
		ci = &desc.conn
	}
	if !ci.hasAddress {
		return netip.Addr{}, fmt.Errorf("%w: no c= address for m=audio %d", ErrBadSDP, md.port)
	}
	addr, err := netip.ParseAddr(ci.address)
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: c=%s %s %q is not an IP address", ErrBadSDP, ci.netType, ci.addrType, ci.address)
	}
	return addr.Unmap(), nil
}
