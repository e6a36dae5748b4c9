package media

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Offers as real phones send them (LF here, CRLF on the wire: see crlf).
const (
	// baresip 3.x, default audio settings.
	offerBaresip = `v=0
o=- 1694098466 3848418587 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
m=audio 10390 RTP/AVP 0 8 101
b=AS:64
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
a=rtcp-rsize
`
	// linphone 5: opus first, telephone-event at three clocks, rtcp-mux,
	// and a video stream the server must decline.
	offerLinphone = `v=0
o=bob 2721 1838 IN IP4 10.0.0.5
s=Talk
c=IN IP4 10.0.0.5
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-mux
a=rtcp:7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-mux
`
	// Lync 2013 towards a trunk with encryption optional: wideband codecs
	// first, ICE candidates, crypto, G.711 in the middle.
	offerLync = `v=0
o=- 0 0 IN IP4 10.1.1.20
s=session
c=IN IP4 10.1.1.20
b=CT:99980
t=0 0
m=audio 50012 RTP/AVP 117 104 114 9 112 111 0 8 116 115 4 97 13 118 101
a=x-ssrc-range:3409076224-3409076224
a=rtcp-fb:* x-message app send:dsh recv:dsh
a=rtcp-rsize
a=label:main-audio
a=x-source:main-audio
a=ice-ufrag:Xm3B
a=ice-pwd:3uxNrV5tHRXswpd2CfjvN2U0
a=candidate:1 1 UDP 2130706431 10.1.1.20 50012 typ host 
a=candidate:1 2 UDP 2130705918 10.1.1.20 50013 typ host 
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:WaKi5aL1d0B2P8BpaAbsNDxOlWP9+fJX4bKpUaQa|2^31|1:1
a=maxptime:200
a=rtcp:50013
a=rtpmap:117 G722/8000/2
a=rtpmap:104 SILK/16000
a=fmtp:104 useinbandfec=1; usedtx=0
a=rtpmap:114 x-msrta/16000
a=fmtp:114 bitrate=29000
a=rtpmap:9 G722/8000
a=rtpmap:112 G7221/16000
a=fmtp:112 bitrate=24000
a=rtpmap:111 SIREN/16000
a=fmtp:111 bitrate=16000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:116 AAL2-G726-32/8000
a=rtpmap:115 x-msrta/8000
a=fmtp:115 bitrate=11800
a=rtpmap:4 G723/8000
a=rtpmap:97 RED/8000
a=rtpmap:13 CN/8000
a=rtpmap:118 CN/16000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=encryption:optional
`
	// A gateway that numbers G.711 dynamically (PCMA preferred, lower-case
	// encoding name with a channel count) and telephone-event as 96.
	offerDynamic = `v=0
o=gw 5 5 IN IP4 172.16.0.9
s=-
c=IN IP4 172.16.0.9
t=0 0
m=audio 2222 RTP/AVP 9 102 103 96
a=rtpmap:9 G722/8000
a=rtpmap:102 PCMA/8000
a=rtpmap:103 pcmu/8000/1
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=ptime:30
`
	// A Polycom-style hold re-INVITE: same session, version + 1, sendonly.
	offerHoldSendonly = `v=0
o=- 1694098466 3848418588 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
m=audio 10390 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendonly
`
	offerHoldInactive = `v=0
o=- 1 2 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
m=audio 10390 RTP/AVP 8
a=inactive
`
	// RFC 2543 hold: c=0.0.0.0 and no direction attribute.
	offerHoldLegacy = `v=0
o=- 1 3 IN IP4 192.168.1.23
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 10390 RTP/AVP 0
`
	offerRecvonly = `v=0
o=- 1 2 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
m=audio 10390 RTP/AVP 0
a=recvonly
`
	offerSessionSendonly = `v=0
o=- 1 2 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
a=sendonly
m=audio 10390 RTP/AVP 0
`
	// The m-line's direction and c= override the session's.
	offerMediaOverrides = `v=0
o=- 1 2 IN IP4 192.168.1.23
s=-
c=IN IP4 0.0.0.0
t=0 0
a=sendonly
a=ptime:40
m=audio 10390 RTP/AVP 0
c=IN IP4 192.168.1.77
a=sendrecv
`
	offerIPv6 = `v=0
o=- 9 9 IN IP6 2001:db8::5
s=-
c=IN IP6 2001:db8::5
t=0 0
m=audio 40000 RTP/AVP 8 0 101
a=rtpmap:101 telephone-event/8000
`
	// linphone with AVPF on: answered in kind.
	offerAVPF = `v=0
o=- 1 1 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
m=audio 7078 RTP/AVPF 8
a=rtcp-fb:* trr-int 1000
`
	// Best-effort SRTP as some phones do it: an SRTP audio stream, then the
	// same audio in plain RTP. The plain one is taken.
	offerSRTPThenRTP = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 6000 RTP/SAVP 0 101
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WaKi5aL1d0B2P8BpaAbsNDxOlWP9+fJX4bKpUaQa
a=rtpmap:101 telephone-event/8000
m=audio 6002 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
`
	// Static payload type 0 remapped by rtpmap is not PCMU; G.711 moved onto
	// another static number or onto the RTCP-reserved 72-76 is not trusted,
	// nor is telephone-event there. PCMA on 8 and PCMU on 96 remain.
	offerRemappedStatic = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 6000 RTP/AVP 0 3 74 72 8 96
a=rtpmap:0 G729/8000
a=rtpmap:3 PCMU/8000
a=rtpmap:74 PCMU/8000
a=rtpmap:72 telephone-event/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:96 PCMU/8000
`
	offerG729 = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 6000 RTP/AVP 18 101
a=rtpmap:18 G729/8000
a=rtpmap:101 telephone-event/8000
`
	offerSRTPOnly = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 6000 RTP/SAVP 0 8
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WaKi5aL1d0B2P8BpaAbsNDxOlWP9+fJX4bKpUaQa
`
	offerNoConnection = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
t=0 0
m=audio 6000 RTP/AVP 0
`
	offerHostname = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 pbx.example.com
t=0 0
m=audio 6000 RTP/AVP 0
`
	offerVideoOnly = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=video 6000 RTP/AVP 96
a=rtpmap:96 H264/90000
`
	offerAudioDisabled = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 0 RTP/AVP 0
`
	// T.38 re-INVITEs use m=image, which pion/sdp does not know.
	offerT38 = `v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=image 6000 udptl t38
`
)

// crlf turns a test SDP into its wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

var testLocal = LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.10:20000"), SessionID: 42, SessionVersion: 1}

// withSRTP is testLocal under an SRTP policy.
func withSRTP(p SRTPPolicy) LocalMedia {
	l := testLocal
	l.SRTP = p
	return l
}

// answerText is the server's answer to testLocal, session part included,
// with the given m-line sections (LF here, CRLF on the wire).
func answerText(media ...string) string {
	return string(crlf("v=0\no=callpark 42 1 IN IP4 192.0.2.10\ns=-\nc=IN IP4 192.0.2.10\nt=0 0\n" + strings.Join(media, "")))
}

// exported returns r without the m-line bookkeeping, to compare with a want.
func exported(r *RemoteMedia) RemoteMedia {
	e := *r
	e.lines, e.audio, e.crypto, e.alt = nil, 0, nil, nil
	return e
}

func TestDirection(t *testing.T) {
	tests := []struct {
		d        Direction
		name     string
		sends    bool
		receives bool
	}{
		{SendRecv, "sendrecv", true, true},
		{SendOnly, "sendonly", true, false},
		{RecvOnly, "recvonly", false, true},
		{Inactive, "inactive", false, false},
		{Direction(9), "Direction(9)", false, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.name, tt.d.String())
		require.Equal(t, tt.sends, tt.d.Sends(), tt.name)
		require.Equal(t, tt.receives, tt.d.Receives(), tt.name)
	}
	var zero Direction
	require.Equal(t, SendRecv, zero, "the zero value is the SDP default")
}

// The full RFC 3264 §6.1 table: every offered direction against every stance.
func TestAnswerDirection(t *testing.T) {
	tests := []struct {
		offered Direction
		want    [4]Direction // by stance: SendRecv, SendOnly, RecvOnly, Inactive
	}{
		{SendRecv, [4]Direction{SendRecv, SendOnly, RecvOnly, Inactive}},
		{SendOnly, [4]Direction{RecvOnly, Inactive, RecvOnly, Inactive}},
		{RecvOnly, [4]Direction{SendOnly, SendOnly, Inactive, Inactive}},
		{Inactive, [4]Direction{Inactive, Inactive, Inactive, Inactive}},
		{Direction(7), [4]Direction{Inactive, Inactive, Inactive, Inactive}},
	}
	for _, tt := range tests {
		for stance, want := range tt.want {
			require.Equalf(t, want, AnswerDirection(tt.offered, Direction(stance)), "offer %v, stance %v", tt.offered, Direction(stance))
		}
		require.Equal(t, Inactive, AnswerDirection(tt.offered, Direction(200)), "invalid stance")
	}
}

func TestParseOffer(t *testing.T) {
	tests := []struct {
		name  string
		offer string
		want  RemoteMedia
		hold  bool
	}{
		{"baresip", offerBaresip, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.23:10390"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{0, PCMU}, {8, PCMA}},
			TelephoneEvent: 101, Direction: SendRecv, Ptime: 20 * time.Millisecond,
			SessionID: 1694098466, SessionVersion: 3848418587,
		}, false},
		{"linphone: opus first, telephone-event/8000 among three", offerLinphone, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.5:7078"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{0, PCMU}, {8, PCMA}},
			TelephoneEvent: 100, SessionID: 2721, SessionVersion: 1838,
		}, false},
		{"lync", offerLync, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.1.1.20:50012"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{0, PCMU}, {8, PCMA}},
			TelephoneEvent: 101,
		}, false},
		{"dynamic payload types", offerDynamic, RemoteMedia{
			Addr: netip.MustParseAddrPort("172.16.0.9:2222"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{102, PCMA}, {103, PCMU}},
			TelephoneEvent: 96, Ptime: 30 * time.Millisecond, SessionID: 5, SessionVersion: 5,
		}, false},
		{"hold with sendonly", offerHoldSendonly, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.23:10390"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{0, PCMU}, {8, PCMA}},
			TelephoneEvent: 101, Direction: SendOnly, SessionID: 1694098466, SessionVersion: 3848418588,
		}, true},
		{"hold with inactive", offerHoldInactive, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.23:10390"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{8, PCMA}}, Direction: Inactive, SessionID: 1, SessionVersion: 2,
		}, true},
		{"legacy hold c=0.0.0.0", offerHoldLegacy, RemoteMedia{
			Addr: netip.MustParseAddrPort("0.0.0.0:10390"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{0, PCMU}}, Direction: SendOnly, SessionID: 1, SessionVersion: 3,
		}, true},
		{"recvonly is not a hold", offerRecvonly, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.23:10390"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{0, PCMU}}, Direction: RecvOnly, SessionID: 1, SessionVersion: 2,
		}, false},
		{"session-level direction", offerSessionSendonly, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.23:10390"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{0, PCMU}}, Direction: SendOnly, SessionID: 1, SessionVersion: 2,
		}, true},
		{"media-level c= and direction override the session's", offerMediaOverrides, RemoteMedia{
			Addr: netip.MustParseAddrPort("192.168.1.77:10390"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{0, PCMU}}, Direction: SendRecv, Ptime: 40 * time.Millisecond,
			SessionID: 1, SessionVersion: 2,
		}, false},
		{"IPv6", offerIPv6, RemoteMedia{
			Addr: netip.MustParseAddrPort("[2001:db8::5]:40000"), Proto: "RTP/AVP",
			Formats:        []PayloadFormat{{8, PCMA}, {0, PCMU}},
			TelephoneEvent: 101, SessionID: 9, SessionVersion: 9,
		}, false},
		{"AVPF", offerAVPF, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.5:7078"), Proto: "RTP/AVPF",
			Formats: []PayloadFormat{{8, PCMA}}, SessionID: 1, SessionVersion: 1,
		}, false},
		{"SRTP stream first, plain one kept as the alternative", offerSRTPThenRTP, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.8:6000"), Proto: "RTP/SAVP",
			Formats: []PayloadFormat{{0, PCMU}}, TelephoneEvent: 101, SessionID: 1, SessionVersion: 1,
		}, false},
		{"remapped static and RTCP-reserved numbers", offerRemappedStatic, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.8:6000"), Proto: "RTP/AVP",
			Formats: []PayloadFormat{{8, PCMA}, {96, PCMU}}, SessionID: 1, SessionVersion: 1,
		}, false},
		{"G.729 only parses, Answer declines it", offerG729, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.8:6000"), Proto: "RTP/AVP",
			TelephoneEvent: 101, SessionID: 1, SessionVersion: 1,
		}, false},
		{"SRTP only", offerSRTPOnly, RemoteMedia{
			Addr: netip.MustParseAddrPort("10.0.0.8:6000"), Proto: "RTP/SAVP",
			Formats: []PayloadFormat{{0, PCMU}, {8, PCMA}}, SessionID: 1, SessionVersion: 1,
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseOffer(crlf(tt.offer))
			require.NoError(t, err)
			require.Equal(t, tt.want, exported(r))
			require.Equal(t, tt.hold, r.Hold())
		})
	}
}

func TestParseOfferLineEndings(t *testing.T) {
	want, err := ParseOffer(crlf(offerBaresip))
	require.NoError(t, err)
	for name, text := range map[string]string{
		"LF only":               offerBaresip,
		"no final line end":     strings.TrimSuffix(string(crlf(offerBaresip)), "\r\n"),
		"LF, no final line end": strings.TrimSuffix(offerBaresip, "\n"),
	} {
		got, err := ParseOffer([]byte(text))
		require.NoError(t, err, name)
		require.Equal(t, want, got, name)
	}
}

func TestParseOfferErrors(t *testing.T) {
	tests := []struct {
		name    string
		offer   []byte
		wantErr error
		wantMsg string
	}{
		{"junk", []byte("hello world"), ErrBadSDP, "syntax error"},
		{"empty body", nil, ErrBadSDP, "no o= line"},
		{"version only", []byte("v=0\r\n"), ErrBadSDP, "no o= line"},
		{"missing c=", crlf(offerNoConnection), ErrBadSDP, "no c= address for m=audio 6000"},
		{"host name in c=", crlf(offerHostname), ErrBadSDP, `"pbx.example.com" is not an IP address`},
		{"m=image unknown to pion", crlf(offerT38), ErrBadSDP, "image"},
		{"video only", crlf(offerVideoOnly), ErrNoAudioStream, "1 m-lines"},
		{"audio disabled with port 0", crlf(offerAudioDisabled), ErrNoAudioStream, "non-zero port"},
		{"no m-line", crlf("v=0\no=- 1 1 IN IP4 10.0.0.8\ns=-\nc=IN IP4 10.0.0.8\nt=0 0\n"), ErrNoAudioStream, "0 m-lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseOffer(tt.offer)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Nil(t, r)
		})
	}
}

func TestAnswer(t *testing.T) {
	const audioPCMU101 = "m=audio 20000 RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=ptime:20\n"
	tests := []struct {
		name   string
		offer  string
		local  LocalMedia
		stance Direction
		want   string
		wantN  Negotiated
	}{
		{
			name: "baresip, bridged", offer: offerBaresip, local: testLocal, stance: SendRecv,
			want: "v=0\r\n" +
				"o=callpark 42 1 IN IP4 192.0.2.10\r\n" +
				"s=-\r\n" +
				"c=IN IP4 192.0.2.10\r\n" +
				"t=0 0\r\n" +
				"m=audio 20000 RTP/AVP 0 101\r\n" +
				"a=rtpmap:0 PCMU/8000\r\n" +
				"a=rtpmap:101 telephone-event/8000\r\n" +
				"a=fmtp:101 0-16\r\n" +
				"a=ptime:20\r\n" +
				"a=sendrecv\r\n",
			wantN: Negotiated{Codec: PCMU, PayloadType: 0, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: SendRecv},
		},
		{
			name: "baresip, music only", offer: offerBaresip, local: testLocal, stance: SendOnly,
			want: answerText(audioPCMU101 + "a=sendonly\n"),
			wantN: Negotiated{Codec: PCMU, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: SendOnly},
		},
		{
			name: "linphone: PCMU picked over opus, video declined in place", offer: offerLinphone, local: testLocal, stance: SendRecv,
			want: answerText(
				"m=audio 20000 RTP/AVP 0 100\na=rtpmap:0 PCMU/8000\na=rtpmap:100 telephone-event/8000\na=fmtp:100 0-16\na=ptime:20\na=sendrecv\n",
				"m=video 0 RTP/AVP 96 97\n"),
			wantN: Negotiated{Codec: PCMU, TelephoneEvent: 100,
				Remote: netip.MustParseAddrPort("10.0.0.5:7078"), Direction: SendRecv},
		},
		{
			name: "lync", offer: offerLync, local: testLocal, stance: SendRecv,
			want: answerText(audioPCMU101 + "a=sendrecv\n"),
			wantN: Negotiated{Codec: PCMU, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("10.1.1.20:50012"), Direction: SendRecv},
		},
		{
			name: "dynamic numbers are kept", offer: offerDynamic, local: testLocal, stance: SendRecv,
			want: answerText("m=audio 20000 RTP/AVP 102 96\na=rtpmap:102 PCMA/8000\na=rtpmap:96 telephone-event/8000\na=fmtp:96 0-16\na=ptime:20\na=sendrecv\n"),
			wantN: Negotiated{Codec: PCMA, PayloadType: 102, TelephoneEvent: 96,
				Remote: netip.MustParseAddrPort("172.16.0.9:2222"), Direction: SendRecv},
		},
		{
			name: "local codec restriction skips the offer's first", offer: offerBaresip,
			local:  LocalMedia{Addr: testLocal.Addr, SessionID: 42, SessionVersion: 1, Codecs: []Codec{PCMA}},
			stance: SendRecv,
			want:   answerText("m=audio 20000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=ptime:20\na=sendrecv\n"),
			wantN: Negotiated{Codec: PCMA, PayloadType: 8, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: SendRecv},
		},
		{
			name: "no telephone-event when local declines it", offer: offerBaresip,
			local:  LocalMedia{Addr: testLocal.Addr, SessionID: 42, SessionVersion: 1, NoTelephoneEvent: true},
			stance: SendRecv,
			want:   answerText("m=audio 20000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=ptime:20\na=sendrecv\n"),
			wantN:  Negotiated{Codec: PCMU, Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: SendRecv},
		},
		{
			name: "hold sendonly answered recvonly", offer: offerHoldSendonly, local: testLocal, stance: SendRecv,
			want: answerText(audioPCMU101 + "a=recvonly\n"),
			wantN: Negotiated{Codec: PCMU, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: RecvOnly, RemoteHold: true},
		},
		{
			name: "hold inactive answered inactive", offer: offerHoldInactive, local: testLocal, stance: SendRecv,
			want: answerText("m=audio 20000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=ptime:20\na=inactive\n"),
			wantN: Negotiated{Codec: PCMA, PayloadType: 8,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: Inactive, RemoteHold: true},
		},
		{
			name: "legacy hold answered recvonly", offer: offerHoldLegacy, local: testLocal, stance: SendRecv,
			want: answerText("m=audio 20000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=ptime:20\na=recvonly\n"),
			wantN: Negotiated{Codec: PCMU, Remote: netip.MustParseAddrPort("0.0.0.0:10390"),
				Direction: RecvOnly, RemoteHold: true},
		},
		{
			name: "recvonly offer answered sendonly", offer: offerRecvonly, local: testLocal, stance: SendRecv,
			want:  answerText("m=audio 20000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\na=ptime:20\na=sendonly\n"),
			wantN: Negotiated{Codec: PCMU, Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: SendOnly},
		},
		{
			name: "AVPF answered in kind", offer: offerAVPF, local: testLocal, stance: SendRecv,
			want:  answerText("m=audio 20000 RTP/AVPF 8\na=rtpmap:8 PCMA/8000\na=ptime:20\na=sendrecv\n"),
			wantN: Negotiated{Codec: PCMA, PayloadType: 8, Remote: netip.MustParseAddrPort("10.0.0.5:7078"), Direction: SendRecv},
		},
		{
			name: "SRTP off: SRTP stream declined, plain one answered", offer: offerSRTPThenRTP, local: withSRTP(SRTPOff), stance: SendRecv,
			want: answerText("m=audio 0 RTP/SAVP 0 101\n", audioPCMU101+"a=sendrecv\n"),
			wantN: Negotiated{Codec: PCMU, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("10.0.0.8:6002"), Direction: SendRecv},
		},
		{
			name: "IPv6", offer: offerIPv6,
			local:  LocalMedia{Addr: netip.MustParseAddrPort("[2001:db8::10]:30000"), Username: "pbx", SessionID: 7, SessionVersion: 8},
			stance: SendOnly,
			want: string(crlf("v=0\no=pbx 7 8 IN IP6 2001:db8::10\ns=-\nc=IN IP6 2001:db8::10\nt=0 0\n" +
				"m=audio 30000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\na=ptime:20\na=sendonly\n")),
			wantN: Negotiated{Codec: PCMA, PayloadType: 8, TelephoneEvent: 101,
				Remote: netip.MustParseAddrPort("[2001:db8::5]:40000"), Direction: SendOnly},
		},
		{
			name: "IPv4-mapped local address written as IPv4", offer: offerHoldInactive,
			local:  LocalMedia{Addr: netip.MustParseAddrPort("[::ffff:192.0.2.10]:20000"), SessionID: 42, SessionVersion: 1},
			stance: SendOnly,
			want:   answerText("m=audio 20000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=ptime:20\na=inactive\n"),
			wantN: Negotiated{Codec: PCMA, PayloadType: 8,
				Remote: netip.MustParseAddrPort("192.168.1.23:10390"), Direction: Inactive, RemoteHold: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer, err := ParseOffer(crlf(tt.offer))
			require.NoError(t, err)
			answer, n, err := Answer(offer, tt.local, tt.stance)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(answer))
			require.Equal(t, tt.wantN, n)

			// The answer is itself valid SDP that says what was negotiated.
			back, err := ParseOffer(answer)
			require.NoError(t, err)
			require.Equal(t, []PayloadFormat{{n.PayloadType, n.Codec}}, back.Formats)
			require.Equal(t, n.TelephoneEvent, back.TelephoneEvent)
			require.Equal(t, n.Direction, back.Direction)
			require.Equal(t, netip.AddrPortFrom(tt.local.Addr.Addr().Unmap(), tt.local.Addr.Port()), back.Addr)
		})
	}
}

// A hand-made RemoteMedia (no parsed m-lines) is answered with one audio line.
func TestAnswerHandMadeOffer(t *testing.T) {
	offer := &RemoteMedia{Addr: netip.MustParseAddrPort("10.0.0.1:4000"), Formats: []PayloadFormat{{8, PCMA}}}
	answer, n, err := Answer(offer, testLocal, SendOnly)
	require.NoError(t, err)
	require.Equal(t, answerText("m=audio 20000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=ptime:20\na=sendonly\n"), string(answer))
	require.Equal(t, Negotiated{Codec: PCMA, PayloadType: 8, Remote: offer.Addr, Direction: SendOnly}, n)
}

func TestAnswerErrors(t *testing.T) {
	baresip, err := ParseOffer(crlf(offerBaresip))
	require.NoError(t, err)
	pcmuOnly, err := ParseOffer(crlf(offerHoldLegacy))
	require.NoError(t, err)
	g729, err := ParseOffer(crlf(offerG729))
	require.NoError(t, err)
	srtp, err := ParseOffer(crlf(offerSRTPOnly))
	require.NoError(t, err)
	withLocal := func(edit func(*LocalMedia)) LocalMedia {
		l := testLocal
		edit(&l)
		return l
	}
	tests := []struct {
		name    string
		offer   *RemoteMedia
		local   LocalMedia
		stance  Direction
		wantErr error
		wantMsg string
	}{
		{"G.729 only", g729, testLocal, SendRecv, ErrNoCommonCodec, "formats [18 101]"},
		{"SRTP only, SRTP off", srtp, withLocal(func(l *LocalMedia) { l.SRTP = SRTPOff }), SendRecv, ErrNoCommonCodec, "RTP/SAVP and SRTP is off"},
		{"plain, SRTP required", pcmuOnly, withLocal(func(l *LocalMedia) { l.SRTP = SRTPRequired }), SendRecv, ErrSRTPRequired, "RTP/AVP"},
		{"bad policy", pcmuOnly, withLocal(func(l *LocalMedia) { l.SRTP = 7 }), SendRecv, ErrInvalidArgument, "SRTPPolicy(7)"},
		{"PCMU offered, PCMA accepted", pcmuOnly, withLocal(func(l *LocalMedia) { l.Codecs = []Codec{PCMA} }), SendRecv, ErrNoCommonCodec, "accepts [PCMA]"},
		{"nil offer", nil, testLocal, SendRecv, ErrBadSDP, "nil offer"},
		{"zero local address", baresip, LocalMedia{}, SendRecv, ErrInvalidArgument, "LocalMedia.Addr"},
		{"local port 0", baresip, withLocal(func(l *LocalMedia) { l.Addr = netip.MustParseAddrPort("192.0.2.10:0") }), SendRecv, ErrInvalidArgument, "LocalMedia.Addr"},
		{"local 0.0.0.0", baresip, withLocal(func(l *LocalMedia) { l.Addr = netip.MustParseAddrPort("0.0.0.0:20000") }), SendRecv, ErrInvalidArgument, "LocalMedia.Addr"},
		{"local zone", baresip, withLocal(func(l *LocalMedia) { l.Addr = netip.MustParseAddrPort("[fe80::1%eth0]:20000") }), SendRecv, ErrInvalidArgument, "LocalMedia.Addr"},
		{"user name with a space", baresip, withLocal(func(l *LocalMedia) { l.Username = "call park" }), SendRecv, ErrInvalidArgument, "LocalMedia.Username"},
		{"user name with CRLF", baresip, withLocal(func(l *LocalMedia) { l.Username = "x\r\nm=video" }), SendRecv, ErrInvalidArgument, "LocalMedia.Username"},
		{"codec not G.711", baresip, withLocal(func(l *LocalMedia) { l.Codecs = []Codec{PCMU, Codec(18)} }), SendRecv, ErrInvalidArgument, "Codec(18)"},
		{"invalid stance", baresip, testLocal, Direction(4), ErrInvalidArgument, "stance Direction(4)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answer, n, err := Answer(tt.offer, tt.local, tt.stance)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Nil(t, answer)
			require.Zero(t, n)
		})
	}
}

// RFC 3264 §8 and the SIP contract: a re-INVITE is answered with the same
// bytes (so the same o= version) unless the answer changed.
func TestAnswerStableAcrossReinvites(t *testing.T) {
	answerTo := func(offer string) []byte {
		r, err := ParseOffer(crlf(offer))
		require.NoError(t, err)
		b, _, err := Answer(r, testLocal, SendRecv)
		require.NoError(t, err)
		return b
	}
	first := answerTo(offerBaresip)
	require.Equal(t, first, answerTo(offerBaresip), "same offer, same answer")
	hold := answerTo(offerHoldSendonly)
	require.NotEqual(t, first, hold, "a hold changes the answer")
	require.Equal(t, bytes.Replace(first, []byte("a=sendrecv"), []byte("a=recvonly"), 1), hold, "only the direction differs")
	require.Equal(t, first, answerTo(offerBaresip), "resume restores the first answer")
}

func TestNewOffer(t *testing.T) {
	tests := []struct {
		name  string
		local LocalMedia
		dir   Direction
		want  string
	}{
		{
			name: "defaults", local: testLocal, dir: SendRecv,
			want: "v=0\r\n" +
				"o=callpark 42 1 IN IP4 192.0.2.10\r\n" +
				"s=-\r\n" +
				"c=IN IP4 192.0.2.10\r\n" +
				"t=0 0\r\n" +
				"m=audio 20000 RTP/AVP 0 8 101\r\n" +
				"a=rtpmap:0 PCMU/8000\r\n" +
				"a=rtpmap:8 PCMA/8000\r\n" +
				"a=rtpmap:101 telephone-event/8000\r\n" +
				"a=fmtp:101 0-16\r\n" +
				"a=ptime:20\r\n" +
				"a=sendrecv\r\n",
		},
		{
			name:  "PCMA first, duplicates dropped, no telephone-event, sendonly",
			local: LocalMedia{Addr: testLocal.Addr, SessionID: 42, SessionVersion: 1, Codecs: []Codec{PCMA, PCMU, PCMA}, NoTelephoneEvent: true},
			dir:   SendOnly,
			want:  answerText("m=audio 20000 RTP/AVP 8 0\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\na=ptime:20\na=sendonly\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOffer(tt.local, tt.dir)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(o.SDP()))
			o.SDP()[0] = 'x'
			require.Equal(t, tt.want, string(o.SDP()), "SDP returns a copy")
		})
	}
}

func TestNewOfferErrors(t *testing.T) {
	tests := []struct {
		name    string
		local   LocalMedia
		dir     Direction
		wantMsg string
	}{
		{"no address", LocalMedia{}, SendRecv, "LocalMedia.Addr"},
		{"bad codec", LocalMedia{Addr: testLocal.Addr, Codecs: []Codec{Codec(9)}}, SendRecv, "Codec(9)"},
		{"bad user name", LocalMedia{Addr: testLocal.Addr, Username: "a\tb"}, SendRecv, "LocalMedia.Username"},
		{"bad direction", testLocal, Direction(5), "offer direction Direction(5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOffer(tt.local, tt.dir)
			require.ErrorIs(t, err, ErrInvalidArgument)
			require.ErrorContains(t, err, tt.wantMsg)
			require.Nil(t, o)
		})
	}
}

func TestParseAnswer(t *testing.T) {
	peer := netip.MustParseAddrPort("198.51.100.7:4000")
	answer := func(mline string, attrs ...string) []byte {
		return crlf("v=0\no=- 3 3 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n" + mline + "\n" + strings.Join(attrs, ""))
	}
	pcmaOnly := LocalMedia{Addr: testLocal.Addr, Codecs: []Codec{PCMA}}
	noTE := LocalMedia{Addr: testLocal.Addr, NoTelephoneEvent: true}
	tests := []struct {
		name    string
		local   LocalMedia
		dir     Direction
		answer  []byte
		want    Negotiated
		wantErr error
	}{
		{"PCMU and telephone-event", testLocal, SendRecv,
			answer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000\n", "a=sendrecv\n"),
			Negotiated{Codec: PCMU, TelephoneEvent: 101, Remote: peer, Direction: SendRecv}, nil},
		{"peer picks PCMA", testLocal, SendRecv,
			answer("m=audio 4000 RTP/AVP 8"),
			Negotiated{Codec: PCMA, PayloadType: 8, Remote: peer, Direction: SendRecv}, nil},
		{"peer renumbers telephone-event", testLocal, SendRecv,
			answer("m=audio 4000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000\n"),
			Negotiated{Codec: PCMU, TelephoneEvent: 96, Remote: peer, Direction: SendRecv}, nil},
		{"recvonly answer: we only send", testLocal, SendRecv,
			answer("m=audio 4000 RTP/AVP 0", "a=recvonly\n"),
			Negotiated{Codec: PCMU, Remote: peer, Direction: SendOnly}, nil},
		{"sendonly answer is a hold", testLocal, SendRecv,
			answer("m=audio 4000 RTP/AVP 0", "a=sendonly\n"),
			Negotiated{Codec: PCMU, Remote: peer, Direction: RecvOnly, RemoteHold: true}, nil},
		{"we offered sendonly", testLocal, SendOnly,
			answer("m=audio 4000 RTP/AVP 0", "a=recvonly\n"),
			Negotiated{Codec: PCMU, Remote: peer, Direction: SendOnly}, nil},
		{"telephone-event ignored when not offered", noTE, SendRecv,
			answer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000\n"),
			Negotiated{Codec: PCMU, Remote: peer, Direction: SendRecv}, nil},
		{"codec not offered", pcmaOnly, SendRecv, answer("m=audio 4000 RTP/AVP 0"), Negotiated{}, ErrNoCommonCodec},
		{"G.729 answer", testLocal, SendRecv, answer("m=audio 4000 RTP/AVP 18"), Negotiated{}, ErrNoCommonCodec},
		{"SRTP answer", testLocal, SendRecv, answer("m=audio 4000 RTP/SAVP 0"), Negotiated{}, ErrNoCommonCodec},
		{"audio declined", testLocal, SendRecv, answer("m=audio 0 RTP/AVP 0"), Negotiated{}, ErrNoAudioStream},
		{"junk", testLocal, SendRecv, []byte("SIP/2.0 200 OK"), Negotiated{}, ErrBadSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOffer(tt.local, tt.dir)
			require.NoError(t, err)
			n, err := o.ParseAnswer(tt.answer)
			require.ErrorIs(t, err, tt.wantErr)
			require.Equal(t, tt.want, n)
		})
	}
}

// Our own offer, answered by our own Answer, parses back as what both agreed.
func TestOfferAnswerRoundTrip(t *testing.T) {
	caller := LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.10:20000"), SessionID: 1, SessionVersion: 1, Codecs: []Codec{PCMA, PCMU}}
	callee := LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.20:30000"), SessionID: 2, SessionVersion: 1, Codecs: []Codec{PCMU, PCMA}}
	o, err := NewOffer(caller, SendRecv)
	require.NoError(t, err)
	remote, err := ParseOffer(o.SDP())
	require.NoError(t, err)
	answer, calleeSide, err := Answer(remote, callee, SendOnly)
	require.NoError(t, err)
	callerSide, err := o.ParseAnswer(answer)
	require.NoError(t, err)
	require.Equal(t, Negotiated{Codec: PCMA, PayloadType: 8, TelephoneEvent: 101, Remote: caller.Addr, Direction: SendOnly}, calleeSide,
		"the offerer's codec order wins")
	require.Equal(t, Negotiated{Codec: PCMA, PayloadType: 8, TelephoneEvent: 101, Remote: callee.Addr, Direction: RecvOnly, RemoteHold: true}, callerSide)
}

func TestPayloadFormatString(t *testing.T) {
	require.Equal(t, "0 PCMU", PayloadFormat{0, PCMU}.String())
	require.Equal(t, "102 PCMA", PayloadFormat{102, PCMA}.String())
}

// fuzzLocal is the local side the fuzz targets answer and offer with.
var fuzzLocal = LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.10:20000"), SessionID: 1, SessionVersion: 1}

// FuzzParseOffer: no input panics; whatever parses is either declined with a
// typed error or answered with SDP that parses back to what was negotiated.
func FuzzParseOffer(f *testing.F) {
	f.Add(crlf(offerLinphone))
	f.Add(crlf(offerSRTPThenRTP))
	f.Fuzz(func(t *testing.T, data []byte) {
		offer, err := ParseOffer(data)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoAudioStream) {
				t.Fatalf("ParseOffer error %v is neither ErrBadSDP nor ErrNoAudioStream", err)
			}
			return
		}
		if !offer.Addr.IsValid() || offer.Addr.Port() == 0 {
			t.Fatalf("accepted offer with address %v", offer.Addr)
		}
		for _, stance := range []Direction{SendRecv, SendOnly} {
			answer, n, err := Answer(offer, fuzzLocal, stance)
			if err != nil {
				if !errors.Is(err, ErrNoCommonCodec) && !errors.Is(err, ErrNoCrypto) {
					t.Fatalf("Answer error %v is neither ErrNoCommonCodec nor ErrNoCrypto", err)
				}
				return
			}
			back, err := ParseOffer(answer)
			if err != nil {
				t.Fatalf("own answer does not parse: %v\n%s", err, answer)
			}
			if len(back.lines) != max(1, len(offer.lines)) {
				t.Fatalf("answer has %d m-lines, offer %d", len(back.lines), len(offer.lines))
			}
			want := PayloadFormat{n.PayloadType, n.Codec}
			if len(back.Formats) != 1 || back.Formats[0] != want || back.TelephoneEvent != n.TelephoneEvent ||
				back.Direction != n.Direction || back.Addr != fuzzLocal.Addr || back.Secure() != (n.SRTP != nil) {
				t.Fatalf("answer parses as %+v, negotiated %+v\n%s", back, n, answer)
			}
			if n.SRTP != nil {
				if c, err := back.Crypto(); err != nil || c.Key != n.SRTP.Local || c.Suite != n.SRTP.Suite {
					t.Fatalf("answer's a=crypto %+v (%v) is not the negotiated %v key\n%s", c, err, n.SRTP.Suite, answer)
				}
			}
		}
	})
}

// FuzzParseAnswer: no input panics, and an accepted answer names a codec we
// offered and a usable address.
func FuzzParseAnswer(f *testing.F) {
	f.Add(crlf("v=0\no=- 3 3 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 4000 RTP/AVP 8 101\na=rtpmap:101 telephone-event/8000\n"))
	o, err := NewOffer(fuzzLocal, SendRecv)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := o.ParseAnswer(data)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoAudioStream) && !errors.Is(err, ErrNoCommonCodec) && !errors.Is(err, ErrNoCrypto) {
				t.Fatalf("ParseAnswer error %v is not one of the documented ones", err)
			}
			return
		}
		if !n.Codec.Valid() || !n.Remote.IsValid() || n.Remote.Port() == 0 || (n.TelephoneEvent != 0 && n.TelephoneEvent < 35) {
			t.Fatalf("accepted answer negotiated %+v", n)
		}
	})
}

func BenchmarkParseOfferAnswer(b *testing.B) {
	offer := crlf(offerLinphone)
	b.ReportAllocs()
	for b.Loop() {
		r, err := ParseOffer(offer)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Answer(r, testLocal, SendRecv); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParkedDirection(t *testing.T) {
	for offered, want := range map[Direction]Direction{
		SendRecv: SendOnly,
		RecvOnly: SendOnly,
		SendOnly: RecvOnly,
		Inactive: Inactive,
	} {
		require.Equal(t, want, ParkedDirection(offered), "offer %v", offered)
	}
}
