package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
)

// SDP offer/answer (RFC 3264) for an audio-only G.711 server. The park server
// answers every INVITE offer (park, retrieve, hold and resume re-INVITEs) and
// makes its own offers when it rings a parker or the fallback. It only ever
// needs one audio stream, PCMU or PCMA, and telephone-event, so the offer is
// reduced to exactly that and everything else is declined in the answer.

// Errors returned by the SDP functions, besides ErrInvalidArgument for a
// LocalMedia field or direction that cannot be written into an SDP and the
// SDES errors (sdes.go). The SIP layer maps them to responses: ErrBadSDP to
// 400, ErrNoAudioStream, ErrNoCommonCodec and the SDES ones to 488 Not
// Acceptable Here.
var (
	// ErrBadSDP reports a session description that cannot be parsed, or one
	// whose audio stream lacks what RFC 4566 requires (a usable c= line).
	ErrBadSDP = errors.New("media: malformed SDP")
	// ErrNoAudioStream reports an SDP without an active (non-zero port)
	// audio stream, such as a video-only offer or a declined audio answer.
	ErrNoAudioStream = errors.New("media: no active audio stream in SDP")
	// ErrNoCommonCodec reports an audio stream without PCMU or PCMA over
	// RTP/AVP or RTP/AVPF (or their SRTP forms, unless LocalMedia.SRTP is
	// SRTPOff) that the local side accepts.
	ErrNoCommonCodec = errors.New("media: no common codec (PCMU or PCMA over RTP/AVP)")
)

// TelephoneEventPayloadType is the payload type NewOffer gives telephone-event
// (RFC 4733): 101 is what nearly every SIP phone uses, which spares a remap.
const TelephoneEventPayloadType uint8 = 101

// answerPtime is the packet time the server sends (20 ms, see FrameDuration).
const answerPtime = "20"

// Direction is the direction attribute of a media stream (RFC 3264 §5.1), seen
// from the side that wrote it. The zero value is SendRecv, the SDP default.
type Direction uint8

// The four stream directions.
const (
	SendRecv Direction = iota // a=sendrecv: both ways
	SendOnly                  // a=sendonly: the writer sends, does not want media
	RecvOnly                  // a=recvonly: the writer receives, does not send
	Inactive                  // a=inactive: no media either way
)

var directionNames = [...]string{SendRecv: "sendrecv", SendOnly: "sendonly", RecvOnly: "recvonly", Inactive: "inactive"}

// String returns the SDP attribute name ("sendrecv", "sendonly", ...).
func (d Direction) String() string {
	if d.valid() {
		return directionNames[d]
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// Sends reports whether the writer of d sends media.
func (d Direction) Sends() bool { return d == SendRecv || d == SendOnly }

// Receives reports whether the writer of d accepts media.
func (d Direction) Receives() bool { return d == SendRecv || d == RecvOnly }

func (d Direction) valid() bool { return d <= Inactive }

func directionOf(sends, receives bool) Direction {
	switch {
	case sends && receives:
		return SendRecv
	case sends:
		return SendOnly
	case receives:
		return RecvOnly
	}
	return Inactive
}

func parseDirectionAttr(key string) (Direction, bool) {
	for d, name := range directionNames {
		if key == name {
			return Direction(d), true
		}
	}
	return 0, false
}

// AnswerDirection returns the direction to answer with (RFC 3264 §6.1) when the
// offer says offered and the local side is willing to do stance: the local side
// sends only if it wants to and the offerer receives, and receives only if it
// wants to and the offerer sends.
//
//	offered \ stance  sendrecv   sendonly   recvonly   inactive
//	sendrecv          sendrecv   sendonly   recvonly   inactive
//	sendonly          recvonly   inactive   recvonly   inactive
//	recvonly          sendonly   sendonly   inactive   inactive
//	inactive          inactive   inactive   inactive   inactive
//
// A parked leg, which only plays music, uses ParkedDirection instead. An
// invalid direction on either side is treated as Inactive.
func AnswerDirection(offered, stance Direction) Direction {
	return directionOf(stance.Sends() && offered.Receives(), stance.Receives() && offered.Sends())
}

// ParkedDirection is the answer direction for a parked leg, which plays music
// and has nothing to hear:
//
//	offered    answer
//	sendrecv   sendonly   we send music; the phone need not send
//	recvonly   sendonly
//	sendonly   recvonly   the phone holds us: no music until it resumes
//	inactive   inactive
//
// It differs from AnswerDirection(offered, SendOnly) in one row: a hold
// (sendonly) is answered recvonly, not inactive, as SIP-CONTRACT's holds
// require, so the phone may still send its own hold audio. Symmetric RTP
// still works while the phone sends nothing: the address in its SDP is used
// until its first packet arrives.
func ParkedDirection(offered Direction) Direction {
	switch offered {
	case SendRecv, RecvOnly:
		return SendOnly
	case SendOnly:
		return RecvOnly
	}
	return Inactive
}

// PayloadFormat is one G.711 format of an audio stream: the codec and the RTP
// payload type that carries it (static 0 or 8, or a dynamic type from rtpmap).
type PayloadFormat struct {
	PayloadType uint8
	Codec       Codec
}

// String returns the format as an rtpmap value without the clock: "0 PCMU".
func (f PayloadFormat) String() string {
	return strconv.Itoa(int(f.PayloadType)) + " " + f.Codec.String()
}

// mediaLine keeps what an answer must echo for each offered m-line (RFC 3264
// §6: same count, order, media type and transport, declined ones with port 0).
type mediaLine struct {
	media   string
	protos  []string
	formats []string
}

// RemoteMedia is a peer's session description reduced to what an audio-only
// G.711 server needs: the one audio stream it will use. ParseOffer fills it.
type RemoteMedia struct {
	// Addr is where the peer receives the audio stream: the m-line's c= (or
	// else the session's c=) and its port. An unspecified address (c=0.0.0.0)
	// is the RFC 2543 way to put a call on hold: send nothing there.
	Addr netip.AddrPort
	// Proto is the stream's transport, "RTP/AVP" or "RTP/AVPF" when usable,
	// "RTP/SAVP" or "RTP/SAVPF" for SRTP.
	Proto string
	// Formats are the stream's PCMU and PCMA formats in the peer's order of
	// preference, one per codec (the first payload type that names it).
	Formats []PayloadFormat
	// TelephoneEvent is the dynamic payload type of telephone-event/8000
	// (RFC 4733), 0 when the stream has none.
	TelephoneEvent uint8
	// Direction is the peer's direction for the stream: the m-line's attribute,
	// else the session's, else sendrecv. The legacy hold c=0.0.0.0 takes away
	// receiving, so it reads as sendonly (or inactive).
	Direction Direction
	// Ptime is the packet time the peer asked for (a=ptime), 0 if none.
	Ptime time.Duration
	// SessionID and SessionVersion are the o= line's: an unchanged version in
	// a re-INVITE means an unchanged offer (RFC 3264 §8).
	SessionID, SessionVersion uint64

	lines  []mediaLine  // every m-line, for the answer
	audio  int          // index of the described stream in lines
	crypto []string     // the stream's a=crypto values
	alt    *RemoteMedia // the first usable stream of the other kind (plain or SRTP), or nil
}

// Secure reports whether the stream is SRTP (RTP/SAVP or RTP/SAVPF).
func (r *RemoteMedia) Secure() bool {
	_, secure := rtpProto(strings.Split(r.Proto, "/"))
	return secure
}

// Crypto returns the a=crypto line Answer would choose for the stream: the
// first one it can use. Errors: ErrNoCrypto (wrapping the first line's
// error: ErrUnknownSuite, ErrBadCryptoKey, ...), also for a plain stream.
func (r *RemoteMedia) Crypto() (Crypto, error) { return chooseCrypto(r.crypto) }

// forPolicy returns the stream Answer uses under policy: r, or the other
// kind of stream the offer also has when policy refuses r's kind.
func (r *RemoteMedia) forPolicy(policy SRTPPolicy) *RemoteMedia {
	if r.alt != nil && ((policy == SRTPOff && r.Secure()) || (policy == SRTPRequired && !r.Secure())) {
		return r.alt
	}
	return r
}

// offeredFormats returns the audio m-line's formats as written, for errors.
func (r *RemoteMedia) offeredFormats() []string {
	if r.audio >= 0 && r.audio < len(r.lines) {
		return r.lines[r.audio].formats
	}
	return nil
}

// Hold reports whether the peer is holding the call: it sends nothing
// (sendonly, inactive) or gave the legacy hold address c=0.0.0.0.
func (r *RemoteMedia) Hold() bool { return !r.Direction.Receives() }

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

// LocalMedia is the local side of a session description: where the server
// receives RTP and how it names the session. The zero values of the optional
// fields mean the defaults.
type LocalMedia struct {
	// Addr is the local RTP address written into c= and m=: a unicast IP
	// (not 0.0.0.0, which means hold) and a non-zero port.
	Addr netip.AddrPort
	// Username is the o= user name; empty means "callpark".
	Username string
	// SessionID and SessionVersion go into o=. Keep both for the life of a
	// dialog and raise the version only when the SDP body changes (RFC 3264
	// §8): the output is deterministic, so comparing bytes tells.
	SessionID, SessionVersion uint64
	// Codecs are the codecs the server accepts (Answer) or offers in this
	// order (NewOffer); empty means PCMU then PCMA.
	Codecs []Codec
	// NoTelephoneEvent leaves telephone-event (RFC 4733) out of offers and
	// answers.
	NoTelephoneEvent bool
	// SRTP is how Answer treats plain and SRTP offers; the zero value,
	// SRTPOptional, answers each in kind.
	SRTP SRTPPolicy
	// SRTPKey is the key of our a=crypto line: what the local side
	// encrypts with. Zero makes Answer draw a fresh one for each SRTP
	// answer (a Session draws one and keeps it for its dialog).
	SRTPKey SRTPKey
	// SRTPSuite, when set, makes NewOffer offer RTP/SAVP with this suite
	// and SRTPKey (then required) as a=crypto tag 1.
	SRTPSuite SRTPSuite
}

// check validates l and returns its codecs with the default applied.
func (l *LocalMedia) check() ([]Codec, error) {
	if !l.Addr.IsValid() || l.Addr.Port() == 0 || l.Addr.Addr().IsUnspecified() || l.Addr.Addr().Zone() != "" {
		return nil, fmt.Errorf("%w: LocalMedia.Addr %q is not a unicast IP and non-zero port", ErrInvalidArgument, l.Addr)
	}
	if strings.ContainsAny(l.Username, " \t\r\n") {
		return nil, fmt.Errorf("%w: LocalMedia.Username %q contains white space", ErrInvalidArgument, l.Username)
	}
	if len(l.Codecs) == 0 {
		return []Codec{PCMU, PCMA}, nil
	}
	codecs := make([]Codec, 0, len(l.Codecs))
	for _, c := range l.Codecs {
		if !c.Valid() {
			return nil, fmt.Errorf("%w: LocalMedia.Codecs holds %v, want PCMU or PCMA", ErrInvalidArgument, c)
		}
		if !slices.Contains(codecs, c) {
			codecs = append(codecs, c)
		}
	}
	return codecs, nil
}

// Negotiated is the outcome of an offer/answer exchange for one call leg.
type Negotiated struct {
	// Codec is the G.711 codec both sides use.
	Codec Codec
	// PayloadType is the RTP payload type of Codec on this leg, as the remote
	// side numbered it.
	PayloadType uint8
	// TelephoneEvent is the payload type of telephone-event, 0 if not agreed.
	TelephoneEvent uint8
	// Remote is where to send RTP, until symmetric RTP learns better. It is an
	// unspecified address when the peer holds the call the RFC 2543 way.
	Remote netip.AddrPort
	// Direction is the local side's direction: whether the server may send
	// (music or relayed audio) and whether it expects media.
	Direction Direction
	// RemoteHold reports that the peer holds the call (see RemoteMedia.Hold).
	RemoteHold bool
	// SRTP holds the keys of an SRTP stream, nil for plain RTP: pass it to
	// EndpointOptions.SRTP (or Endpoint.Apply).
	SRTP *SRTPKeys
}

// Answer builds the SDP answer to offer (RFC 3264 §6): the offer's first
// usable audio stream answered with the first of the offer's codecs that
// local accepts, under the offer's payload type number, telephone-event under
// the offer's number when both sides have it, 20 ms packets and the direction
// AnswerDirection(offer.Direction, stance). Every other m-line is declined
// with port 0, keeping the offer's count and order.
//
// The output is deterministic (CRLF line ends): the same offer, local and
// stance give the same bytes, so a re-INVITE can be answered with the same o=
// version unless the answer changed.
//
// An SRTP offer (RTP/SAVP, RTP/SAVPF) is answered in kind with the offer's
// first usable a=crypto line's tag and suite and local.SRTPKey (a fresh key
// if it is zero), unless local.SRTP is SRTPOff; a plain one is answered
// plain unless local.SRTP is SRTPRequired. Either way an offer that also
// has a usable stream of the other kind gets that one instead.
//
// Errors: ErrNoCommonCodec, ErrInvalidArgument, ErrBadSDP for a nil offer,
// ErrNoCrypto (an SRTP stream without a usable a=crypto line; it wraps
// ErrUnknownSuite, ErrBadCryptoKey, ...) and ErrSRTPRequired.
func Answer(offer *RemoteMedia, local LocalMedia, stance Direction) ([]byte, Negotiated, error) {
	if offer == nil {
		return nil, Negotiated{}, fmt.Errorf("%w: nil offer", ErrBadSDP)
	}
	accepted, err := local.check()
	if err != nil {
		return nil, Negotiated{}, err
	}
	if !stance.valid() {
		return nil, Negotiated{}, fmt.Errorf("%w: stance %v", ErrInvalidArgument, stance)
	}
	offer = offer.forPolicy(local.SRTP)
	protos := strings.Split(offer.Proto, "/")
	if offer.Proto == "" {
		protos = []string{"RTP", "AVP"}
	}
	usable, secure := rtpProto(protos)
	switch {
	case !usable:
		return nil, Negotiated{}, fmt.Errorf("%w: m=audio transport is %s, want RTP/AVP, RTP/AVPF, RTP/SAVP or RTP/SAVPF", ErrNoCommonCodec, offer.Proto)
	case secure && local.SRTP == SRTPOff:
		return nil, Negotiated{}, fmt.Errorf("%w: m=audio transport is %s and SRTP is off, want RTP/AVP or RTP/AVPF", ErrNoCommonCodec, offer.Proto)
	case !secure && local.SRTP == SRTPRequired:
		return nil, Negotiated{}, fmt.Errorf("%w: m=audio transport is %s", ErrSRTPRequired, offer.Proto)
	case local.SRTP > SRTPOff:
		return nil, Negotiated{}, fmt.Errorf("%w: LocalMedia.SRTP %v", ErrInvalidArgument, local.SRTP)
	}
	i := slices.IndexFunc(offer.Formats, func(f PayloadFormat) bool { return slices.Contains(accepted, f.Codec) })
	if i < 0 {
		return nil, Negotiated{}, fmt.Errorf("%w: offer's m=audio formats %v carry G.711 %v, local side accepts %v",
			ErrNoCommonCodec, offer.offeredFormats(), offer.Formats, accepted)
	}
	n := Negotiated{
		Codec:       offer.Formats[i].Codec,
		PayloadType: offer.Formats[i].PayloadType,
		Remote:      offer.Addr,
		Direction:   AnswerDirection(offer.Direction, stance),
		RemoteHold:  offer.Hold(),
	}
	if !local.NoTelephoneEvent {
		n.TelephoneEvent = offer.TelephoneEvent
	}
	var crypto string
	if secure {
		c, err := chooseCrypto(offer.crypto)
		if err != nil {
			return nil, Negotiated{}, err
		}
		key := local.SRTPKey
		if key.IsZero() {
			key = NewSRTPKey()
		}
		n.SRTP = &SRTPKeys{Suite: c.Suite, Local: key, Remote: c.Key, RemoteMKI: c.MKI}
		crypto = Crypto{Tag: c.Tag, Suite: c.Suite, Key: key}.String()
	}
	audio := audioDescription(local.Addr.Port(), protos, []PayloadFormat{{PayloadType: n.PayloadType, Codec: n.Codec}}, n.TelephoneEvent, n.Direction, crypto)
	desc := sessionDescription(&local)
	if len(offer.lines) == 0 {
		desc.MediaDescriptions = []*sdp.MediaDescription{audio}
	}
	for j, line := range offer.lines {
		if j == offer.audio {
			desc.MediaDescriptions = append(desc.MediaDescriptions, audio)
			continue
		}
		formats := line.formats
		if len(formats) == 0 {
			formats = []string{"0"} // SDP wants at least one; a declined stream's are ignored
		}
		desc.MediaDescriptions = append(desc.MediaDescriptions, &sdp.MediaDescription{
			MediaName: sdp.MediaName{Media: line.media, Port: sdp.RangedPort{Value: 0}, Protos: line.protos, Formats: formats},
		})
	}
	b, err := desc.Marshal()
	if err != nil {
		return nil, Negotiated{}, fmt.Errorf("media: marshal SDP answer: %w", err)
	}
	return b, n, nil
}

// sessionDescription returns the session part shared by offers and answers.
func sessionDescription(local *LocalMedia) *sdp.SessionDescription {
	ip := local.Addr.Addr().Unmap()
	user := local.Username
	if user == "" {
		user = "callpark"
	}
	return &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username:       user,
			SessionID:      local.SessionID,
			SessionVersion: local.SessionVersion,
			NetworkType:    "IN",
			AddressType:    addrType(ip),
			UnicastAddress: ip.String(),
		},
		SessionName: "-",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN",
			AddressType: addrType(ip),
			Address:     &sdp.Address{Address: ip.String()},
		},
		TimeDescriptions: []sdp.TimeDescription{{}},
	}
}

// audioDescription writes the server's audio m-line and its attributes,
// with the a=crypto value crypto unless it is empty.
func audioDescription(port uint16, protos []string, formats []PayloadFormat, telephoneEvent uint8, dir Direction, crypto string) *sdp.MediaDescription {
	md := &sdp.MediaDescription{
		MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: int(port)}, Protos: protos},
	}
	for _, f := range formats {
		pt := strconv.Itoa(int(f.PayloadType))
		md.MediaName.Formats = append(md.MediaName.Formats, pt)
		md.Attributes = append(md.Attributes, sdp.NewAttribute("rtpmap", pt+" "+f.Codec.String()+"/8000"))
	}
	if telephoneEvent != 0 {
		pt := strconv.Itoa(int(telephoneEvent))
		md.MediaName.Formats = append(md.MediaName.Formats, pt)
		md.Attributes = append(md.Attributes,
			sdp.NewAttribute("rtpmap", pt+" telephone-event/8000"),
			sdp.NewAttribute("fmtp", pt+" 0-16"))
	}
	if crypto != "" {
		md.Attributes = append(md.Attributes, sdp.NewAttribute("crypto", crypto))
	}
	md.Attributes = append(md.Attributes,
		sdp.NewAttribute("ptime", answerPtime),
		sdp.NewPropertyAttribute(dir.String()))
	return md
}

// Offer is an SDP offer the server made (to ring a parker or the fallback),
// kept to check the peer's answer against it.
type Offer struct {
	sdp            []byte
	codecs         []Codec
	telephoneEvent bool
	direction      Direction
	crypto         *Crypto // our a=crypto line, nil for a plain offer
}

// NewOffer builds the server's SDP offer: one RTP/AVP audio stream at
// local.Addr with local's codecs (PCMU then PCMA by default) under their
// static payload types, telephone-event as TelephoneEventPayloadType unless
// local.NoTelephoneEvent, 20 ms packets and direction dir. With
// local.SRTPSuite set the stream is RTP/SAVP with one a=crypto line, tag 1,
// that suite and local.SRTPKey.
//
// Errors: ErrInvalidArgument.
func NewOffer(local LocalMedia, dir Direction) (*Offer, error) {
	codecs, err := local.check()
	if err != nil {
		return nil, err
	}
	if !dir.valid() {
		return nil, fmt.Errorf("%w: offer direction %v", ErrInvalidArgument, dir)
	}
	formats := make([]PayloadFormat, len(codecs))
	for i, c := range codecs {
		formats[i] = PayloadFormat{PayloadType: c.PayloadType(), Codec: c}
	}
	var te uint8
	if !local.NoTelephoneEvent {
		te = TelephoneEventPayloadType
	}
	protos := []string{"RTP", "AVP"}
	var crypto *Crypto
	if local.SRTPSuite != 0 {
		if !local.SRTPSuite.Valid() {
			return nil, fmt.Errorf("%w: LocalMedia.SRTPSuite %v", ErrInvalidArgument, local.SRTPSuite)
		}
		if local.SRTPKey.IsZero() {
			return nil, fmt.Errorf("%w: LocalMedia.SRTPKey is unset for an SRTP offer", ErrInvalidArgument)
		}
		protos = []string{"RTP", "SAVP"}
		crypto = &Crypto{Tag: 1, Suite: local.SRTPSuite, Key: local.SRTPKey}
	}
	line := ""
	if crypto != nil {
		line = crypto.String()
	}
	desc := sessionDescription(&local)
	desc.MediaDescriptions = []*sdp.MediaDescription{audioDescription(local.Addr.Port(), protos, formats, te, dir, line)}
	b, err := desc.Marshal()
	if err != nil {
		return nil, fmt.Errorf("media: marshal SDP offer: %w", err)
	}
	return &Offer{sdp: b, codecs: codecs, telephoneEvent: te != 0, direction: dir, crypto: crypto}, nil
}

// SDP returns the offer's session description, to send as the INVITE body.
func (o *Offer) SDP() []byte { return bytes.Clone(o.sdp) }

// ParseAnswer parses the peer's SDP answer to o (the body of its 2xx) and
// returns what was agreed: the first codec of the answer that o offered,
// telephone-event if both sides have it, and the local direction left by
// the answer's.
//
// The answer to an SRTP offer must be SRTP, with an a=crypto line of the
// offer's tag and suite whose key becomes Negotiated.SRTP.Remote.
//
// Errors: those of ParseOffer (ErrNoAudioStream when the peer declined the audio
// stream), ErrNoCommonCodec when it answered with no codec o offered (or
// SRTP to a plain offer), ErrNoCrypto when it answered an SRTP offer plain
// or without a matching a=crypto line.
func (o *Offer) ParseAnswer(b []byte) (Negotiated, error) {
	answer, err := ParseOffer(b)
	if err != nil {
		return Negotiated{}, err
	}
	if o.crypto != nil {
		answer = answer.forPolicy(SRTPRequired)
	}
	usable, secure := rtpProto(strings.Split(answer.Proto, "/"))
	switch {
	case !usable || (secure && o.crypto == nil):
		return Negotiated{}, fmt.Errorf("%w: answer's m=audio transport is %s, offered RTP/AVP", ErrNoCommonCodec, answer.Proto)
	case !secure && o.crypto != nil:
		return Negotiated{}, fmt.Errorf("%w: answer's m=audio transport is %s, offered RTP/SAVP", ErrNoCrypto, answer.Proto)
	}
	var keys *SRTPKeys
	if secure {
		if keys, err = o.answerKeys(answer.crypto); err != nil {
			return Negotiated{}, err
		}
	}
	i := slices.IndexFunc(answer.Formats, func(f PayloadFormat) bool { return slices.Contains(o.codecs, f.Codec) })
	if i < 0 {
		return Negotiated{}, fmt.Errorf("%w: answer has %v, offered %v", ErrNoCommonCodec, answer.Formats, o.codecs)
	}
	n := Negotiated{
		Codec:       answer.Formats[i].Codec,
		PayloadType: answer.Formats[i].PayloadType,
		Remote:      answer.Addr,
		Direction:   AnswerDirection(answer.Direction, o.direction),
		RemoteHold:  answer.Hold(),
	}
	if o.telephoneEvent {
		n.TelephoneEvent = answer.TelephoneEvent
	}
	n.SRTP = keys
	return n, nil
}

// answerKeys finds the a=crypto line of an answer that accepts our offered
// one: same tag, same suite (RFC 4568 §7.1.3).
func (o *Offer) answerKeys(values []string) (*SRTPKeys, error) {
	var first error
	for _, v := range values {
		c, err := ParseCrypto(v)
		if err == nil && (c.Tag != o.crypto.Tag || c.Suite != o.crypto.Suite) {
			err = fmt.Errorf("%w: a=crypto:%d %v answers none of ours (offered a=crypto:%d %v)", ErrBadCrypto, c.Tag, c.Suite, o.crypto.Tag, o.crypto.Suite)
		}
		if err == nil {
			return &SRTPKeys{Suite: c.Suite, Local: o.crypto.Key, Remote: c.Key, RemoteMKI: c.MKI}, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return nil, fmt.Errorf("%w: the answer's SRTP stream has no a=crypto line", ErrNoCrypto)
	}
	return nil, fmt.Errorf("%w: %w", ErrNoCrypto, first)
}
