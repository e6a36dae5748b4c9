package media

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// testKeyB64 is a real key from a baresip offer (30 bytes in base64).
const testKeyB64 = "WaKi5aL1d0B2P8BpaAbsNDxOlWP9+fJX4bKpUaQa"

func testKey(t testing.TB) SRTPKey {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(testKeyB64)
	require.NoError(t, err)
	var k SRTPKey
	copy(k[:], b)
	return k
}

func TestParseCrypto(t *testing.T) {
	key := testKey(t)
	tests := []struct {
		value string
		want  Crypto
		back  string // String() when it differs from value
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64, Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key}, ""},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + testKeyB64, Crypto{Tag: 2, Suite: SuiteAESCM128SHA1_32, Key: key}, ""},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|2^31", Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key, Lifetime: 1 << 31}, ""},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1000", Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key, Lifetime: 1000}, ""},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1024", Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key, Lifetime: 1024},
			"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|2^10"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|2^20|1:4", Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key, Lifetime: 1 << 20, MKI: []byte{0, 0, 0, 1}}, ""},
		{"9 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|258:2", Crypto{Tag: 9, Suite: SuiteAESCM128SHA1_80, Key: key, MKI: []byte{1, 2}}, ""},
		{"999999999 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " WSH=128", Crypto{Tag: 999999999, Suite: SuiteAESCM128SHA1_80, Key: key, WindowSizeHint: 128}, ""},
		{"1  AES_CM_128_HMAC_SHA1_80\tinline:" + testKeyB64 + " ", Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key},
			"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			c, err := ParseCrypto(tt.value)
			require.NoError(t, err)
			require.Equal(t, tt.want, c)
			back := tt.back
			if back == "" {
				back = tt.value
			}
			require.Equal(t, back, c.String())
		})
	}
}

func TestParseCryptoErrors(t *testing.T) {
	tests := []struct {
		value   string
		wantErr error
		wantMsg string
	}{
		{"", ErrBadCrypto, "want a tag"},
		{"1 AES_CM_128_HMAC_SHA1_80", ErrBadCrypto, "want a tag"},
		{"0 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64, ErrBadCrypto, `tag "0"`},
		{"1000000000 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64, ErrBadCrypto, "tag"},
		{"+1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64, ErrBadCrypto, "tag"},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64, ErrBadCrypto, "tag"},
		{"1 AES_256_CM_HMAC_SHA1_80 inline:" + testKeyB64, ErrUnknownSuite, "AES_256_CM_HMAC_SHA1_80"},
		{"1 AEAD_AES_128_GCM inline:" + testKeyB64, ErrUnknownSuite, "AEAD_AES_128_GCM"},
		{"1 aes_cm_128_hmac_sha1_80 inline:" + testKeyB64, ErrUnknownSuite, "aes_cm"},
		{"1 AES_CM_128_HMAC_SHA1_80 uri:https://example.com/key", ErrBadCrypto, "want inline"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:not*base64", ErrBadCryptoKey, "not base64"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + strings.TrimSuffix(testKeyB64, "a") + "=", ErrBadCryptoKey, "29 bytes"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(make([]byte, 16)), ErrBadCryptoKey, "16 bytes"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(make([]byte, 30)), ErrBadCryptoKey, "all zeros"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|2^49", ErrBadCrypto, "lifetime"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|0", ErrBadCrypto, "lifetime"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1:0", ErrBadCrypto, "MKI"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|256:1", ErrBadCrypto, "does not fit"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1:129", ErrBadCrypto, "MKI"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|2^20|1:4|7", ErrBadCrypto, "fields"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1:4|2^20", ErrBadCrypto, "after the MKI"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1:1;inline:" + testKeyB64 + "|2:1", ErrCryptoParam, "several keys"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " KDR=1", ErrCryptoParam, "KDR=1"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " UNENCRYPTED_SRTP", ErrCryptoParam, "UNENCRYPTED_SRTP"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " UNAUTHENTICATED_SRTP", ErrCryptoParam, "UNAUTHENTICATED_SRTP"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " FEC_ORDER=FEC_SRTP", ErrCryptoParam, "FEC_ORDER"},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " WSH=10", ErrBadCrypto, "WSH"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			_, err := ParseCrypto(tt.value)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.wantMsg)
		})
	}
}

// A key never shows in a formatted value.
func TestSRTPKeyRedacted(t *testing.T) {
	k := testKey(t)
	keys := &SRTPKeys{Suite: SuiteAESCM128SHA1_80, Local: k, Remote: k}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v", *keys, *keys, *keys), fmt.Sprintf("%+v", Negotiated{SRTP: keys})} {
		require.NotContains(t, s, testKeyB64[:8])
		require.NotContains(t, s, fmt.Sprint(k[0])+" "+fmt.Sprint(k[1]))
	}
	require.False(t, NewSRTPKey().IsZero())
	require.NotEqual(t, NewSRTPKey(), NewSRTPKey())
}

func TestParseSRTPPolicy(t *testing.T) {
	for _, p := range []SRTPPolicy{SRTPOptional, SRTPRequired, SRTPOff} {
		got, err := ParseSRTPPolicy(p.String())
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	_, err := ParseSRTPPolicy("mandatory")
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.ErrorContains(t, err, `"mandatory"`)
}

// srtpOffer is an SRTP offer with the given a=crypto values.
func srtpOffer(proto string, crypto ...string) []byte {
	var b strings.Builder
	b.WriteString("v=0\no=- 5 5 IN IP4 10.0.0.8\ns=-\nc=IN IP4 10.0.0.8\nt=0 0\nm=audio 6000 " + proto + " 8 0 101\na=rtpmap:101 telephone-event/8000\n")
	for _, c := range crypto {
		b.WriteString("a=crypto:" + c + "\n")
	}
	b.WriteString("a=sendrecv\n")
	return crlf(b.String())
}

func TestAnswerSRTP(t *testing.T) {
	key := testKey(t)
	ours := NewSRTPKey()
	local := testLocal
	local.SRTPKey = ours
	tests := []struct {
		name  string
		offer []byte
		tag   string
		want  Crypto // the offer's line chosen
	}{
		{"SAVP", srtpOffer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:"+testKeyB64), "1",
			Crypto{Tag: 1, Suite: SuiteAESCM128SHA1_80, Key: key}},
		{"SAVPF, 32-bit tag", srtpOffer("RTP/SAVPF", "3 AES_CM_128_HMAC_SHA1_32 inline:"+testKeyB64+"|2^31|1:1"), "3",
			Crypto{Tag: 3, Suite: SuiteAESCM128SHA1_32, Key: key, Lifetime: 1 << 31, MKI: []byte{1}}},
		{"unknown suite skipped for the next line", srtpOffer("RTP/SAVP",
			"1 AES_256_CM_HMAC_SHA1_80 inline:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 46)),
			"2 AES_CM_128_HMAC_SHA1_80 inline:"+testKeyB64+" KDR=4",
			"3 AES_CM_128_HMAC_SHA1_32 inline:"+testKeyB64), "3",
			Crypto{Tag: 3, Suite: SuiteAESCM128SHA1_32, Key: key}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer, err := ParseOffer(tt.offer)
			require.NoError(t, err)
			require.True(t, offer.Secure())
			chosen, err := offer.Crypto()
			require.NoError(t, err)
			require.Equal(t, tt.want, chosen)

			answer, n, err := Answer(offer, local, SendRecv)
			require.NoError(t, err)
			require.Equal(t, &SRTPKeys{Suite: tt.want.Suite, Local: ours, Remote: key, RemoteMKI: tt.want.MKI}, n.SRTP)
			require.Equal(t, PCMA, n.Codec)
			// Same tag and suite, our key, nothing else.
			line := "a=crypto:" + Crypto{Tag: tt.want.Tag, Suite: tt.want.Suite, Key: ours}.String() + "\r\n"
			require.Contains(t, string(answer), line)
			require.Equal(t, 1, strings.Count(string(answer), "a=crypto:"))
			require.NotContains(t, string(answer), testKeyB64)

			back, err := ParseOffer(answer)
			require.NoError(t, err)
			require.Equal(t, offer.Proto, back.Proto)
			c, err := back.Crypto()
			require.NoError(t, err)
			require.Equal(t, ours, c.Key)
		})
	}
}

func TestAnswerSRTPErrors(t *testing.T) {
	wrongSize := base64.StdEncoding.EncodeToString(make([]byte, 46))
	tests := []struct {
		name    string
		offer   []byte
		local   LocalMedia
		wantErr []error
		wantMsg string
	}{
		{"SAVP without crypto", srtpOffer("RTP/SAVP"), testLocal, []error{ErrNoCrypto}, "no a=crypto line"},
		{"unknown suite only", srtpOffer("RTP/SAVP", "1 F8_128_HMAC_SHA1_80 inline:"+testKeyB64), testLocal,
			[]error{ErrNoCrypto, ErrUnknownSuite}, "F8_128_HMAC_SHA1_80"},
		{"key of the wrong length", srtpOffer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:"+wrongSize), testLocal,
			[]error{ErrNoCrypto, ErrBadCryptoKey}, "46 bytes"},
		{"key not base64", srtpOffer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:%%%"), testLocal,
			[]error{ErrNoCrypto, ErrBadCryptoKey}, "base64"},
		{"SRTP off", srtpOffer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:"+testKeyB64), withSRTP(SRTPOff),
			[]error{ErrNoCommonCodec}, "SRTP is off"},
		{"plain, SRTP required", crlf(offerBaresip), withSRTP(SRTPRequired), []error{ErrSRTPRequired}, "RTP/AVP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offer, err := ParseOffer(tt.offer)
			require.NoError(t, err)
			_, _, err = Answer(offer, tt.local, SendRecv)
			for _, want := range tt.wantErr {
				require.ErrorIs(t, err, want)
			}
			require.ErrorContains(t, err, tt.wantMsg)
		})
	}
}

// An offer with both kinds of stream gets the one the policy wants.
func TestAnswerSRTPPolicyPicksStream(t *testing.T) {
	plainThenSRTP := crlf(`v=0
o=- 1 1 IN IP4 10.0.0.8
s=-
c=IN IP4 10.0.0.8
t=0 0
m=audio 6002 RTP/AVP 0
m=audio 6000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:` + testKeyB64 + `
`)
	for _, tt := range []struct {
		offer  []byte
		policy SRTPPolicy
		port   uint16
		secure bool
	}{
		{crlf(offerSRTPThenRTP), SRTPOptional, 6000, true},
		{crlf(offerSRTPThenRTP), SRTPRequired, 6000, true},
		{crlf(offerSRTPThenRTP), SRTPOff, 6002, false},
		{plainThenSRTP, SRTPOptional, 6002, false},
		{plainThenSRTP, SRTPRequired, 6000, true},
		{plainThenSRTP, SRTPOff, 6002, false},
	} {
		offer, err := ParseOffer(tt.offer)
		require.NoError(t, err)
		answer, n, err := Answer(offer, withSRTP(tt.policy), SendRecv)
		require.NoError(t, err, tt.policy)
		require.Equal(t, tt.port, n.Remote.Port(), tt.policy)
		require.Equal(t, tt.secure, n.SRTP != nil, tt.policy)
		require.Equal(t, 2, strings.Count(string(answer), "m=audio"))
		require.Equal(t, 1, strings.Count(string(answer), "m=audio 20000 "), "the other stream is declined")
	}
}

// Our SRTP offer, answered by our own Answer: each side encrypts with its
// own key and decrypts with the other's.
func TestOfferSRTPRoundTrip(t *testing.T) {
	caller := testLocal
	caller.SRTPSuite, caller.SRTPKey = SuiteAESCM128SHA1_32, NewSRTPKey()
	o, err := NewOffer(caller, SendRecv)
	require.NoError(t, err)
	require.Contains(t, string(o.SDP()), "m=audio 20000 RTP/SAVP 0 8 101\r\n")
	require.Contains(t, string(o.SDP()), "a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:")

	remote, err := ParseOffer(o.SDP())
	require.NoError(t, err)
	callee := LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.20:30000"), SRTPKey: NewSRTPKey()}
	answer, calleeSide, err := Answer(remote, callee, SendRecv)
	require.NoError(t, err)
	callerSide, err := o.ParseAnswer(answer)
	require.NoError(t, err)
	require.Equal(t, &SRTPKeys{Suite: SuiteAESCM128SHA1_32, Local: caller.SRTPKey, Remote: callee.SRTPKey}, callerSide.SRTP)
	require.Equal(t, &SRTPKeys{Suite: SuiteAESCM128SHA1_32, Local: callee.SRTPKey, Remote: caller.SRTPKey}, calleeSide.SRTP)

	// Wrong answers to an SRTP offer.
	plain := strings.Replace(string(answer), "RTP/SAVP", "RTP/AVP", 1)
	_, err = o.ParseAnswer([]byte(plain))
	require.ErrorIs(t, err, ErrNoCrypto)
	otherTag := strings.Replace(string(answer), "a=crypto:1 ", "a=crypto:2 ", 1)
	_, err = o.ParseAnswer([]byte(otherTag))
	require.ErrorIs(t, err, ErrNoCrypto)
	require.ErrorContains(t, err, "answers none of ours")
	noCrypto := strings.Replace(string(answer), "a=crypto:", "a=x-crypto:", 1)
	_, err = o.ParseAnswer([]byte(noCrypto))
	require.ErrorIs(t, err, ErrNoCrypto)

	// An SRTP answer to a plain offer.
	plainOffer, err := NewOffer(testLocal, SendRecv)
	require.NoError(t, err)
	_, err = plainOffer.ParseAnswer(answer)
	require.ErrorIs(t, err, ErrNoCommonCodec)

	_, err = NewOffer(LocalMedia{Addr: testLocal.Addr, SRTPSuite: SuiteAESCM128SHA1_80}, SendRecv)
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.ErrorContains(t, err, "SRTPKey")
}

// A Session keeps one key for its dialog: re-INVITEs are answered with the
// same bytes, and its own re-offer stays SRTP under that key.
func TestSessionSRTP(t *testing.T) {
	s := NewSession(LocalMedia{Addr: testLocal.Addr})
	offer, err := ParseOffer(srtpOffer("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_80 inline:"+testKeyB64))
	require.NoError(t, err)
	first, n1, err := s.Answer(offer, SendOnly)
	require.NoError(t, err)
	again, n2, err := s.Answer(offer, SendOnly)
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, n1.SRTP, n2.SRTP)

	re, err := s.Offer(SendRecv)
	require.NoError(t, err)
	require.Contains(t, string(re.SDP()), "RTP/SAVP")
	c, err := mustParse(t, re.SDP()).Crypto()
	require.NoError(t, err)
	require.Equal(t, n1.SRTP.Local, c.Key)

	// The peer goes plain: so does our next offer.
	plain, err := ParseOffer(crlf(offerBaresip))
	require.NoError(t, err)
	_, n3, err := s.Answer(plain, SendOnly)
	require.NoError(t, err)
	require.Nil(t, n3.SRTP)
	re, err = s.Offer(SendRecv)
	require.NoError(t, err)
	require.Contains(t, string(re.SDP()), "RTP/AVP")
}

func mustParse(t *testing.T, b []byte) *RemoteMedia {
	t.Helper()
	r, err := ParseOffer(b)
	require.NoError(t, err)
	return r
}

// FuzzParseCrypto: no input panics; an accepted line writes back as a line
// that parses to the same thing, and a refused one names a documented error.
func FuzzParseCrypto(f *testing.F) {
	for _, seed := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64,
		"2 AES_CM_128_HMAC_SHA1_32 inline:" + testKeyB64 + "|2^31|1:4",
		"3 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1000 WSH=64",
		"1 AES_256_CM_HMAC_SHA1_80 inline:" + testKeyB64,
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|1:1;inline:" + testKeyB64 + "|2:1",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + " KDR=1 UNENCRYPTED_SRTCP",
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + testKeyB64 + "|18446744073709551615:8",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, value string) {
		c, err := ParseCrypto(value)
		if err != nil {
			for _, known := range []error{ErrBadCrypto, ErrUnknownSuite, ErrBadCryptoKey, ErrCryptoParam} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("ParseCrypto(%q): undocumented error %v", value, err)
		}
		if !c.Suite.Valid() || c.Tag == 0 || c.Key.IsZero() || len(c.MKI) > maxMKILen || c.Lifetime > maxSRTPPackets {
			t.Fatalf("ParseCrypto(%q) accepted %+v", value, c)
		}
		back, err := ParseCrypto(c.String())
		if err != nil {
			t.Fatalf("%q written back as %q, which does not parse: %v", value, c.String(), err)
		}
		if fmt.Sprint(back.Tag, back.Suite, back.Key == c.Key, back.Lifetime, back.MKI, back.WindowSizeHint) !=
			fmt.Sprint(c.Tag, c.Suite, true, c.Lifetime, c.MKI, c.WindowSizeHint) {
			t.Fatalf("%q parses as %+v, written back as %q, parses as %+v", value, c, c.String(), back)
		}
	})
}
