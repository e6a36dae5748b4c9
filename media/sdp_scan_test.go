package media

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// sdpTestOffers are every offer of sdp_test.go, in CRLF and LF.
func sdpTestOffers() [][]byte {
	var out [][]byte
	for _, s := range []string{
		offerBaresip, offerLinphone, offerLync, offerDynamic, offerHoldSendonly, offerHoldInactive,
		offerHoldLegacy, offerRecvonly, offerSessionSendonly, offerMediaOverrides, offerAVPF,
		offerSRTPThenRTP, offerRemappedStatic, offerSRTPOnly, offerNoConnection, offerHostname,
		offerVideoOnly, offerAudioDisabled,
	} {
		out = append(out, crlf(s), []byte(s))
	}
	return out
}

// parseOfferPion is ParseOffer as it was before the scanner: pion always.
func parseOfferPion(b []byte) (*RemoteMedia, error) {
	text := string(b)
	if !strings.HasSuffix(text, "\n") {
		text += "\r\n"
	}
	var desc offerDesc
	if err := pionOffer(text, &desc); err != nil {
		return nil, err
	}
	return readOffer(&desc)
}

// checkScanMatchesPion fails if the scanner accepts data and pion refuses
// it, or reads it differently.
func checkScanMatchesPion(t *testing.T, data []byte) (scanned bool) {
	t.Helper()
	text := string(data)
	var fast, slow offerDesc
	if !scanOffer(text, &fast) {
		return false
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\r\n" // as ParseOffer gives it to pion
	}
	if err := pionOffer(text, &slow); err != nil {
		t.Fatalf("scanner accepts what pion refuses (%v):\n%q", err, text)
	}
	normalize(&fast)
	normalize(&slow)
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("scanner and pion differ on\n%q\nscanner: %+v\npion:    %+v", text, fast, slow)
	}
	for i := range slow.media {
		g1, te1 := streamFormats(&slow.media[i])
		g2, te2 := streamFormatsWithMap(&slow.media[i])
		if !reflect.DeepEqual(g1, g2) || te1 != te2 {
			t.Fatalf("streamFormats differs from the map-based reading on %q: %v %d / %v %d", text, g1, te1, g2, te2)
		}
	}
	r1, err1 := readOffer(&fast)
	r2, err2 := parseOfferPion(data)
	if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
		t.Fatalf("errors differ on %q: %v / %v", text, err1, err2)
	}
	if err1 == nil && !reflect.DeepEqual(r1, r2) {
		t.Fatalf("results differ on %q:\n%+v\n%+v", text, r1, r2)
	}
	return true
}

// streamFormatsWithMap is streamFormats as it was before rtpmap and
// encodingIs (an rtpmap map per m-line, lower-cased copies), the reference
// the fuzz targets hold the allocation-free version to.
func streamFormatsWithMap(md *offerMedia) (g711 []PayloadFormat, telephoneEvent uint8) {
	maps := make(map[string]string)
	for _, a := range md.attrs {
		if a.key != "rtpmap" {
			continue
		}
		pt, enc, ok := strings.Cut(strings.TrimSpace(a.value), " ")
		if !ok {
			continue
		}
		enc = strings.ToLower(strings.TrimSpace(enc))
		if name, rate, ok := strings.Cut(enc, "/"); ok {
			rate, _, _ = strings.Cut(rate, "/")
			enc = name + "/" + rate
		}
		if _, seen := maps[pt]; !seen {
			maps[pt] = enc
		}
	}
	for _, f := range md.formats {
		pt, ok := payloadType(f)
		if !ok || pt >= 72 && pt <= 76 {
			continue
		}
		enc, mapped := maps[f]
		var codec Codec
		switch {
		case pt < 35:
			codec = Codec(pt)
			if !codec.Valid() || mapped && enc != strings.ToLower(codec.String())+"/8000" {
				continue
			}
		case enc == "pcmu/8000":
			codec = PCMU
		case enc == "pcma/8000":
			codec = PCMA
		case enc == "telephone-event/8000" && telephoneEvent == 0:
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

// TestEncodingIs covers what lower-casing would and would not match.
func TestEncodingIs(t *testing.T) {
	for _, tt := range []struct {
		enc  string
		want bool
	}{
		{"PCMU/8000", true}, {"pcmu/8000", true}, {"PcMu/8000/1", true}, {"PCMU/8000/", true},
		{"PCMU", false}, {"PCMU/16000", false}, {"PCMU8000", false}, {"PCM\u212aU/8000", false},
		{"PCMU/8000 ", false}, {"", false}, {"/", false},
	} {
		require.Equal(t, tt.want, encodingIs(tt.enc, "pcmu/8000"), tt.enc)
	}
}

// normalize makes empty slices nil, which is all the two readers may
// differ in without meaning.
func normalize(d *offerDesc) {
	if len(d.attrs) == 0 {
		d.attrs = nil
	}
	if len(d.media) == 0 {
		d.media = nil
	}
	for i := range d.media {
		m := &d.media[i]
		if len(m.attrs) == 0 {
			m.attrs = nil
		}
		if len(m.formats) == 0 {
			m.formats = nil
		}
		if len(m.protos) == 0 {
			m.protos = nil
		}
	}
}

func TestScanOfferMatchesPion(t *testing.T) {
	scanned := 0
	for _, offer := range sdpTestOffers() {
		if checkScanMatchesPion(t, offer) {
			scanned++
		}
	}
	// Every offer of the suite is in the common strict form: the fast path
	// must take them, or it saves nothing.
	require.Equal(t, len(sdpTestOffers()), scanned)
}

func TestScanOfferLeavesOddFormsToPion(t *testing.T) {
	const base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	for name, text := range map[string]string{
		"empty":                 "\r\n",
		"blank line":            strings.Replace(base, "s=-\r\n", "s=-\r\n\r\n", 1),
		"double space":          strings.Replace(base, "RTP/AVP 0", "RTP/AVP  0", 1),
		"tab":                   strings.Replace(base, "RTP/AVP 0", "RTP/AVP\t0", 1),
		"trailing space":        strings.Replace(base, "RTP/AVP 0", "RTP/AVP 0 ", 1),
		"i= line":               strings.Replace(base, "s=-\r\n", "s=-\r\ni=info\r\n", 1),
		"port range":            strings.Replace(base, "4000", "4000/2", 1),
		"20-digit session id":   strings.Replace(base, "o=- 1 1", "o=- 18446744073709551616 1", 1),
		"origin without addr":   strings.Replace(base, " IP4 192.0.2.1\r\ns", "\r\ns", 1),
		"connection no address": strings.Replace(base, "c=IN IP4 192.0.2.1", "c=IN IP4", 1),
		"experimental b=":       strings.Replace(base, "t=0 0", "b=X-YZ:12\r\nt=0 0", 1),
		"r= line":               strings.Replace(base, "t=0 0\r\n", "t=0 0\r\nr=7d 1h 0 25h\r\n", 1),
		"carriage return":       strings.Replace(base, "s=-", "s=-\r-", 1),
	} {
		t.Run(name, func(t *testing.T) {
			var d offerDesc
			require.False(t, scanOffer(text, &d))
			// And ParseOffer still answers as pion's parse does.
			r1, err1 := ParseOffer([]byte(text))
			r2, err2 := parseOfferPion([]byte(text))
			require.Equal(t, fmt.Sprint(err2), fmt.Sprint(err1))
			require.Equal(t, r2, r1)
		})
	}
}

func TestScanOfferEndsAtAnyLine(t *testing.T) {
	// pion accepts a description cut after any whole line; so does the
	// scanner, and both then give the same answer.
	full := string(crlf(offerLinphone))
	for i := 0; i < len(full); i++ {
		if full[i] != '\n' {
			continue
		}
		require.True(t, checkScanMatchesPion(t, []byte(full[:i+1])), "cut after byte %d", i)
	}
}

// FuzzScanOffer is the differential check of the scanner against pion:
// whatever the scanner accepts, pion accepts and reads the same, and
// ParseOffer gives the same result and error either way.
func FuzzScanOffer(f *testing.F) {
	for _, offer := range sdpTestOffers() {
		f.Add(offer)
	}
	f.Add([]byte("v=0\no=a 1 2 IN IP6 ::1\ns=\nb=AS:64\nt=0 0\nt=1 2\na=sendonly\na=:x\nm=audio 0 RTP/AVP\nm=video 5 RTP/SAVPF 96 97\nc=IN IP6 ::1\nb=TIAS:1\nc=IN IP4 0.0.0.0\na=ptime:30\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkScanMatchesPion(t, data) {
			return
		}
		// Left to pion: ParseOffer is exactly pion's parse.
		r1, err1 := ParseOffer(data)
		r2, err2 := parseOfferPion(data)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && (err1.Error() != err2.Error() || !errors.Is(err1, ErrBadSDP) && !errors.Is(err1, ErrNoAudioStream))) {
			t.Fatalf("errors differ: %v / %v", err1, err2)
		}
		if err1 == nil && !reflect.DeepEqual(r1, r2) {
			t.Fatalf("results differ:\n%+v\n%+v", r1, r2)
		}
	})
}

// BenchmarkParseOffer reads the linphone offer with the scanner (ParseOffer)
// and with pion's full parse, as ParseOffer did before.
func BenchmarkParseOffer(b *testing.B) {
	offer := crlf(offerLinphone)
	for _, bc := range []struct {
		name  string
		parse func([]byte) (*RemoteMedia, error)
	}{{"scan", ParseOffer}, {"pion", parseOfferPion}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.parse(offer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
