package media

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SDES (RFC 4568): the SRTP master keys of an RTP/SAVP stream travel in the
// SDP, one a=crypto line per offered suite and key. The offerer lists the
// lines it accepts, in its order of preference; the answerer picks one and
// answers with the same tag and suite and a key of its own. Each side
// encrypts what it sends with its own key and decrypts with the other's.
//
// Only what a G.711 stream of a SIP phone needs is read: the two AES-CM
// suites every SIP stack offers, one inline key (with optional lifetime and
// MKI) and the window size hint. A line with anything else (another suite,
// several keys, key derivation rates, unencrypted or unauthenticated SRTP,
// FEC) is not usable, and the answerer moves on to the offer's next line.

// Errors of SDES, besides ErrBadSDP. They are wrapped with the line or
// field at fault; test them with errors.Is. The SIP layer answers all of
// them with 488 Not Acceptable Here and a Warning naming the problem.
var (
	// ErrNoCrypto reports an RTP/SAVP stream without a usable a=crypto
	// line, or an answer whose crypto does not match the offer's. It
	// wraps the error of the first line when there were lines.
	ErrNoCrypto = errors.New("media: no usable a=crypto for the RTP/SAVP stream")
	// ErrBadCrypto reports an a=crypto line that does not follow RFC 4568's
	// grammar: tag, suite, key parameters, session parameters.
	ErrBadCrypto = errors.New("media: malformed a=crypto")
	// ErrUnknownSuite reports a crypto suite other than
	// AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32.
	ErrUnknownSuite = errors.New("media: unknown SRTP crypto suite")
	// ErrBadCryptoKey reports an inline key that is not base64 or not the
	// suite's 30 bytes of master key and salt.
	ErrBadCryptoKey = errors.New("media: bad SRTP key")
	// ErrCryptoParam reports a session parameter this package does not
	// implement (KDR, UNENCRYPTED_SRTP, FEC_ORDER, ...) or several keys.
	ErrCryptoParam = errors.New("media: unsupported a=crypto parameter")
	// ErrSRTPRequired reports a plain RTP/AVP offer or answer where the
	// local policy is SRTPRequired.
	ErrSRTPRequired = errors.New("media: SRTP is required, the stream is plain RTP")
)

// SRTPSuite is an SRTP crypto suite of RFC 4568 §6.2. The zero value is
// none: plain RTP.
type SRTPSuite uint8

// The suites an Endpoint can protect a stream with. Both are AES-128 in
// counter mode with HMAC-SHA1; they differ in the RTP authentication tag (80
// or 32 bits; RTCP keeps 80).
const (
	SuiteAESCM128SHA1_80 SRTPSuite = iota + 1 // AES_CM_128_HMAC_SHA1_80
	SuiteAESCM128SHA1_32                      // AES_CM_128_HMAC_SHA1_32
)

var suiteNames = [...]string{
	SuiteAESCM128SHA1_80: "AES_CM_128_HMAC_SHA1_80",
	SuiteAESCM128SHA1_32: "AES_CM_128_HMAC_SHA1_32",
}

// Valid reports whether s is one of the supported suites.
func (s SRTPSuite) Valid() bool { return s == SuiteAESCM128SHA1_80 || s == SuiteAESCM128SHA1_32 }

// String returns the suite's SDP name ("AES_CM_128_HMAC_SHA1_80").
func (s SRTPSuite) String() string {
	if s.Valid() {
		return suiteNames[s]
	}
	return "SRTPSuite(" + strconv.Itoa(int(s)) + ")"
}

// authTagLen is the RTP authentication tag's length in bytes.
func (s SRTPSuite) authTagLen() int {
	if s == SuiteAESCM128SHA1_32 {
		return 4
	}
	return 10
}

// parseSuite reads a suite name, case-sensitive as RFC 4568 writes them.
func parseSuite(name string) (SRTPSuite, bool) {
	for s, n := range suiteNames {
		if n != "" && n == name {
			return SRTPSuite(s), true
		}
	}
	return 0, false
}

// SRTPPolicy is whether a side accepts and offers SRTP. The zero value,
// SRTPOptional, accepts both plain and secure offers.
type SRTPPolicy uint8

// The policies.
const (
	// SRTPOptional answers an RTP/SAVP offer with SRTP and an RTP/AVP one
	// with plain RTP.
	SRTPOptional SRTPPolicy = iota
	// SRTPRequired refuses plain offers (ErrSRTPRequired).
	SRTPRequired
	// SRTPOff refuses RTP/SAVP offers as it did before SRTP (an offer with
	// a plain alternative stream gets that one).
	SRTPOff
)

var policyNames = [...]string{SRTPOptional: "optional", SRTPRequired: "required", SRTPOff: "off"}

// String returns "optional", "required" or "off".
func (p SRTPPolicy) String() string {
	if p <= SRTPOff {
		return policyNames[p]
	}
	return "SRTPPolicy(" + strconv.Itoa(int(p)) + ")"
}

// ParseSRTPPolicy reads "optional", "required" or "off".
func ParseSRTPPolicy(s string) (SRTPPolicy, error) {
	for p, n := range policyNames {
		if s == n {
			return SRTPPolicy(p), nil
		}
	}
	return 0, fmt.Errorf("%w: SRTP policy %q, want optional, required or off", ErrInvalidArgument, s)
}

// srtpKeyLen is the master key (16 bytes) and salt (14) of the AES_CM_128
// suites, as the inline key carries them.
const (
	srtpMasterKeyLen = 16
	srtpKeyLen       = srtpMasterKeyLen + 14
)

// SRTPKey is an SRTP master key followed by its master salt, as an a=crypto
// inline key carries them. It prints as "SRTPKey(…)", never its bytes, so a
// Negotiated or EndpointOptions logged with %v does not leak a key.
type SRTPKey [srtpKeyLen]byte

// NewSRTPKey returns a fresh random key (crypto/rand).
func NewSRTPKey() SRTPKey {
	var k SRTPKey
	_, _ = rand.Read(k[:]) // never fails (crypto/rand, Go 1.24)
	return k
}

// IsZero reports whether k is unset.
func (k SRTPKey) IsZero() bool { return k == SRTPKey{} }

// String hides the key.
func (k SRTPKey) String() string { return "SRTPKey(…)" }

// GoString hides the key from %#v too.
func (k SRTPKey) GoString() string { return "SRTPKey(…)" }

// Crypto is one a=crypto attribute for SRTP (RFC 4568 §9.1): its value is
//
//	<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<MKI>:<length>] [<session params>]
type Crypto struct {
	// Tag is the line's number (1-999999999), which the answer repeats.
	Tag uint32
	// Suite is the crypto suite.
	Suite SRTPSuite
	// Key is the master key and salt the writer of the line encrypts with.
	Key SRTPKey
	// Lifetime is how many packets the key may protect, 0 if not said.
	Lifetime uint64
	// MKI is the master key identifier the writer's packets carry, as
	// many bytes as the line's MKI length; nil without one.
	MKI []byte
	// WindowSizeHint is the WSH session parameter (RFC 4568 §6.3.7), 0 if
	// not said. It is only a hint: the receiver's replay window is its own.
	WindowSizeHint uint64
}

// String returns the attribute's value as RFC 4568 writes it.
func (c Crypto) String() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(uint64(c.Tag), 10))
	b.WriteByte(' ')
	b.WriteString(c.Suite.String())
	b.WriteString(" inline:")
	b.WriteString(base64.StdEncoding.EncodeToString(c.Key[:]))
	if c.Lifetime != 0 {
		b.WriteByte('|')
		if c.Lifetime&(c.Lifetime-1) == 0 {
			b.WriteString("2^" + strconv.Itoa(bitLen(c.Lifetime)-1))
		} else {
			b.WriteString(strconv.FormatUint(c.Lifetime, 10))
		}
	}
	if len(c.MKI) > 0 {
		var v uint64
		for _, x := range c.MKI {
			v = v<<8 | uint64(x)
		}
		b.WriteString("|" + strconv.FormatUint(v, 10) + ":" + strconv.Itoa(len(c.MKI)))
	}
	if c.WindowSizeHint != 0 {
		b.WriteString(" WSH=" + strconv.FormatUint(c.WindowSizeHint, 10))
	}
	return b.String()
}

func bitLen(x uint64) int {
	n := 0
	for ; x != 0; x >>= 1 {
		n++
	}
	return n
}

// Limits of RFC 4568 and RFC 3711 on the numbers of a crypto line.
const (
	maxCryptoTag   = 999999999
	maxSRTPPackets = 1 << 48 // RFC 3711 §9.2: a master key protects at most 2^48 SRTP packets
	maxMKILen      = 128     // RFC 4568 §9.2: mki-length is 1 to 128 bytes
)

// ParseCrypto reads the value of an a=crypto attribute (what follows
// "a=crypto:").
//
// Errors: ErrBadCrypto (syntax), ErrUnknownSuite, ErrBadCryptoKey,
// ErrCryptoParam (a key derivation rate, several keys, unencrypted or
// unauthenticated SRTP, FEC, an unknown session parameter).
func ParseCrypto(value string) (Crypto, error) {
	var c Crypto
	f := strings.Fields(value)
	if len(f) < 3 {
		return c, fmt.Errorf("%w: %q: want a tag, a suite and key parameters", ErrBadCrypto, value)
	}
	tag, ok := decimal(f[0])
	if !ok || tag == 0 || tag > maxCryptoTag {
		return c, fmt.Errorf("%w: tag %q, want 1 to 9 digits", ErrBadCrypto, f[0])
	}
	c.Tag = uint32(tag)
	suite, ok := parseSuite(f[1])
	if !ok {
		return c, fmt.Errorf("%w: %q (a=crypto:%d), want AES_CM_128_HMAC_SHA1_80 or AES_CM_128_HMAC_SHA1_32", ErrUnknownSuite, f[1], c.Tag)
	}
	c.Suite = suite
	if strings.Contains(f[2], ";") {
		return c, fmt.Errorf("%w: several keys in a=crypto:%d", ErrCryptoParam, c.Tag)
	}
	if err := c.parseKeyParam(f[2]); err != nil {
		return c, err
	}
	for _, p := range f[3:] {
		name, v, hasValue := strings.Cut(p, "=")
		switch {
		case name == "WSH" && hasValue:
			n, ok := decimal(v)
			if !ok || n < 64 {
				return c, fmt.Errorf("%w: %q in a=crypto:%d, want WSH=<64 or more>", ErrBadCrypto, p, c.Tag)
			}
			c.WindowSizeHint = n
		default:
			return c, fmt.Errorf("%w: session parameter %q in a=crypto:%d", ErrCryptoParam, p, c.Tag)
		}
	}
	return c, nil
}

// parseKeyParam reads "inline:<key||salt>[|lifetime][|mki:length]".
func (c *Crypto) parseKeyParam(p string) error {
	method, info, ok := strings.Cut(p, ":")
	if !ok || method != "inline" {
		return fmt.Errorf("%w: key parameter %q in a=crypto:%d, want inline:<key>", ErrBadCrypto, p, c.Tag)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return fmt.Errorf("%w: key parameter of a=crypto:%d has %d fields, want key[|lifetime][|MKI:length]", ErrBadCrypto, c.Tag, len(parts))
	}
	key, err := base64.StdEncoding.Strict().DecodeString(parts[0])
	if err != nil {
		return fmt.Errorf("%w: a=crypto:%d key is not base64: %v", ErrBadCryptoKey, c.Tag, err)
	}
	if len(key) != srtpKeyLen {
		return fmt.Errorf("%w: a=crypto:%d key and salt are %d bytes, %v wants %d", ErrBadCryptoKey, c.Tag, len(key), c.Suite, srtpKeyLen)
	}
	copy(c.Key[:], key)
	if c.Key.IsZero() {
		return fmt.Errorf("%w: a=crypto:%d key is all zeros", ErrBadCryptoKey, c.Tag)
	}
	rest := parts[1:]
	if len(rest) > 0 && !strings.Contains(rest[0], ":") {
		if c.Lifetime, err = parseLifetime(rest[0]); err != nil {
			return fmt.Errorf("%w: a=crypto:%d lifetime %q: %v", ErrBadCrypto, c.Tag, rest[0], err)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		if c.MKI, err = parseMKI(rest[0]); err != nil {
			return fmt.Errorf("%w: a=crypto:%d MKI %q: %v", ErrBadCrypto, c.Tag, rest[0], err)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: a=crypto:%d: %q after the MKI", ErrBadCrypto, c.Tag, rest[0])
	}
	return nil
}

// decimal reads 1 to 19 digits.
func decimal(s string) (uint64, bool) { return scanUint(s) }

// parseLifetime reads "2^n" or a decimal count of packets, 1 to 2^48.
func parseLifetime(s string) (uint64, error) {
	if exp, ok := strings.CutPrefix(s, "2^"); ok {
		n, ok := decimal(exp)
		if !ok || n > 48 {
			return 0, errors.New("want 2^0 to 2^48")
		}
		return 1 << n, nil
	}
	n, ok := decimal(s)
	if !ok || n == 0 || n > maxSRTPPackets {
		return 0, errors.New("want 1 to 2^48 packets")
	}
	return n, nil
}

// parseMKI reads "value:length" into length bytes, big-endian.
func parseMKI(s string) ([]byte, error) {
	vs, ls, ok := strings.Cut(s, ":")
	v, okV := decimal(vs)
	l, okL := decimal(ls)
	if !ok || !okV || !okL || len(ls) > 3 || l == 0 || l > maxMKILen {
		return nil, errors.New("want <decimal value>:<length 1-128>")
	}
	if l < 8 && v>>(8*l) != 0 {
		return nil, fmt.Errorf("value %d does not fit %d bytes", v, l)
	}
	mki := make([]byte, l)
	for i := len(mki) - 1; i >= 0 && v != 0; i-- {
		mki[i] = byte(v)
		v >>= 8
	}
	return mki, nil
}

// chooseCrypto returns the first usable line of values (the a=crypto
// values of a stream, in the writer's order). With none usable it returns
// ErrNoCrypto, wrapping the first line's error if there was one.
func chooseCrypto(values []string) (Crypto, error) {
	var first error
	for _, v := range values {
		c, err := ParseCrypto(v)
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		return Crypto{}, fmt.Errorf("%w: the stream has no a=crypto line", ErrNoCrypto)
	}
	return Crypto{}, fmt.Errorf("%w (%d a=crypto lines): %w", ErrNoCrypto, len(values), first)
}

// SRTPKeys are one call leg's SRTP keys, as SDES agreed them (Negotiated.SRTP)
// and as an Endpoint needs them (EndpointOptions.SRTP).
type SRTPKeys struct {
	// Suite is the agreed crypto suite.
	Suite SRTPSuite
	// Local is the key the leg encrypts what it sends with: the one in our
	// own a=crypto line.
	Local SRTPKey
	// Remote is the key the peer encrypts with: the one in its line.
	Remote SRTPKey
	// RemoteMKI is the master key identifier the peer's packets carry, nil
	// if its line had none.
	RemoteMKI []byte
}

// check validates k for an Endpoint.
func (k *SRTPKeys) check() error {
	switch {
	case !k.Suite.Valid():
		return fmt.Errorf("%w: SRTP.Suite %v", ErrInvalidArgument, k.Suite)
	case k.Local.IsZero():
		return fmt.Errorf("%w: SRTP.Local key is unset", ErrInvalidArgument)
	case k.Remote.IsZero():
		return fmt.Errorf("%w: SRTP.Remote key is unset", ErrInvalidArgument)
	case len(k.RemoteMKI) > maxMKILen:
		return fmt.Errorf("%w: SRTP.RemoteMKI is %d bytes, at most %d", ErrInvalidArgument, len(k.RemoteMKI), maxMKILen)
	}
	return nil
}
