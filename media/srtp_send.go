package media

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what RFC 3711's suites are
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
)

// The sending half of SRTP's AES_CM_128_HMAC_SHA1_80 and _32 transforms
// (RFC 3711 §4), done here rather than by pion's Context for speed (issue
// 17): each packet costs one AES-CM keystream over the payload and one
// HMAC-SHA1 over the packet and rollover counter, and nothing else. pion's
// EncryptRTP parses the header into an rtp.Header, looks the SSRC up in a
// map, takes a keystream buffer from a sync.Pool and XORs it 16 bytes at a
// time; here the header's length and fields are read in place, the one
// SSRC a leg sends is found first, and the keystream is XORed in one call.
// The output is pion's, byte for byte (srtp_send_test.go checks it across
// rollover counter wraps, and that pion decrypts it).
//
// The keystream is AES-128 over the packet's counter blocks, four at a time
// with AES-NI on amd64 (srtp_aes_amd64.s), where a block at a time through
// cipher.Block waits out each block's ten rounds. crypto/cipher's own bulk
// counter mode (NewCTR) would do that too, but it allocates and copies the
// key schedule for each IV, so that it costs more than the ten single
// blocks of a 160-byte payload (BENCHMARKS.md, issue 17). The tag is
// SHA-1 from the states after the HMAC key's ipad and opad blocks, kept as
// five words each, over the packet's own blocks with the SHA extensions
// (srtp_sha1_amd64.s, crypto/sha1's routine), padded on the stack. Without
// AES-NI or the SHA extensions (or with -tags purego, or off amd64) that
// half goes through crypto/aes block by block, or crypto/hmac.

// RFC 3711 §4.3.1 key derivation labels.
const (
	srtpLabelEncryption = 0x00
	srtpLabelAuth       = 0x01
	srtpLabelSalt       = 0x02
)

const (
	srtpSaltLen    = 14 // session salt, 112 bits
	srtpAuthKeyLen = 20 // HMAC-SHA1 session key, 160 bits
	srtpROCLen     = 4  // the rollover counter the tag covers after the packet

	seqHalf = 1 << 15 // RFC 3711 §3.3.1's 2^15
	seqSpan = 1 << 16
)

var (
	errSRTPShort   = errors.New("media: SRTP: packet shorter than its RTP header")
	errSRTPExhaust = errors.New("media: SRTP: the key protected 2^48 packets, RFC 3711 §9.2 wants a new one")
)

// srtpSession is one master key's session keys and the two halves of the
// transform, for either direction. What a packet reads is kept together, a
// few cache lines: with a thousand legs on a shard, each leg's state is out
// of cache by its next packet.
type srtpSession struct {
	rk     aes128Keys // the session encryption key's round keys, if fastAES
	salt   [srtpSaltLen]byte
	tagLen int8
	// fastAES and fastSHA say whether the keystream and the tag are made
	// with the CPU's AES and SHA instructions (srtp_aes_amd64.s,
	// srtp_sha1_amd64.s); otherwise with crypto/aes and crypto/hmac,
	// through slow.
	fastAES, fastSHA bool

	// HMAC-SHA1 (RFC 2104) with the session authentication key: SHA-1's
	// state after the key's ipad block and after its opad block, so that
	// a packet costs its own blocks only (if fastSHA).
	ipadState, opadState [5]uint32

	slow *srtpSlow // nil if fastAES and fastSHA
}

// srtpSender protects one leg's outgoing RTP packets with one master key.
// It is not safe for concurrent use (srtpOut locks around it).
type srtpSender struct {
	srtpSession

	// first is the rollover state of the first SSRC sent under the key,
	// more those of any others (a leg sends one).
	first srtpIndex
	more  []srtpIndex
}

// srtpSlow is the sender's state for crypto/aes and crypto/hmac, where the
// CPU has no AES or SHA instructions (or the build is purego).
type srtpSlow struct {
	block cipher.Block // AES-128 under the session encryption key

	// HMAC-SHA1 under the session authentication key; crypto/hmac keeps
	// the states after the ipad and opad blocks and restores them on
	// Reset (as fast as restoring crypto/sha1 digests by hand: issue 17).
	hmac hash.Hash

	// Scratch for each packet, here rather than on the stack because the
	// cipher and the HMAC are interfaces, which would make it escape.
	iv  [aes.BlockSize]byte
	ks  [12 * aes.BlockSize]byte
	sum [sha1.Size]byte
}

// srtpIndex is one SSRC's packet index (RFC 3711 §3.3.1: rollover
// counter and highest sequence number), tracked as pion tracks it (its
// sender and its receiver alike), so that both compute the same index for
// any sequence of packets.
type srtpIndex struct {
	ssrc    uint32
	used    bool // this slot is ssrc's
	started bool
	index   uint64 // ROC<<16 | highest sequence number sent or received
}

func newSRTPSender(suite SRTPSuite, key SRTPKey) (*srtpSender, error) {
	s := new(srtpSender)
	if err := s.init(suite, key); err != nil {
		return nil, err
	}
	return s, nil
}

// init derives the session keys from the master key and salt.
func (s *srtpSession) init(suite SRTPSuite, key SRTPKey) error {
	master, err := aes.NewCipher(key[:srtpMasterKeyLen])
	if err != nil {
		return err
	}
	masterSalt := key[srtpMasterKeyLen:]
	var encKey [srtpMasterKeyLen]byte
	var authKey [srtpAuthKeyLen]byte
	s.tagLen = int8(suite.authTagLen())
	srtpKDF(master, masterSalt, srtpLabelEncryption, encKey[:])
	srtpKDF(master, masterSalt, srtpLabelAuth, authKey[:])
	srtpKDF(master, masterSalt, srtpLabelSalt, s.salt[:])
	if rk := newAES128Keys(encKey[:]); rk != nil {
		s.rk, s.fastAES = *rk, true
	}
	if hasSHA1Blocks() {
		s.ipadState = sha1KeyedState(authKey[:], 0x36)
		s.opadState = sha1KeyedState(authKey[:], 0x5c)
		s.fastSHA = true
	}
	if s.fastAES && s.fastSHA {
		return nil
	}
	return s.setSlow(encKey[:], authKey[:])
}

// setSlow sets s up to encrypt with crypto/aes and authenticate with
// crypto/hmac, as it does where fastAES or fastSHA is false.
func (s *srtpSession) setSlow(encKey, authKey []byte) error {
	sl := new(srtpSlow)
	var err error
	if sl.block, err = aes.NewCipher(encKey); err != nil {
		return err
	}
	sl.hmac = hmac.New(sha1.New, authKey)
	s.slow = sl
	return nil
}

// srtpKDF fills out with the AES-CM PRF's output for label (RFC 3711
// §4.3.1 and §4.3.3, key derivation rate 0): the keystream under the master
// key from IV = (label<<48 XOR master salt) * 2^16.
func srtpKDF(master cipher.Block, masterSalt []byte, label byte, out []byte) {
	var iv, ks [aes.BlockSize]byte
	copy(iv[:], masterSalt)
	iv[7] ^= label
	for i := 0; i < len(out); i += aes.BlockSize {
		binary.BigEndian.PutUint16(iv[14:], uint16(i/aes.BlockSize))
		master.Encrypt(ks[:], iv[:])
		copy(out[i:], ks[:])
	}
}

// sha1KeyedState returns SHA-1's state after the HMAC key block (key XOR
// pad) with sha1Blocks.
func sha1KeyedState(key []byte, pad byte) [5]uint32 {
	h := [5]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0} // FIPS 180-4 §5.3.1
	var block [sha1.BlockSize]byte
	copy(block[:], key)
	for i := range block {
		block[i] ^= pad
	}
	sha1Blocks(&h, block[:])
	return h
}

// protect encrypts the RTP packet pkt in place and returns it with its tag
// appended: within pkt's capacity if it has tagLen bytes spare, in a new
// buffer otherwise.
func (s *srtpSender) protect(pkt []byte) ([]byte, error) {
	n := len(pkt)
	hdr, ok := rtpHeaderLen(pkt)
	if !ok {
		return nil, errSRTPShort
	}
	tagLen := int(s.tagLen)
	if cap(pkt)-n < tagLen {
		grown := make([]byte, n, n+tagLen)
		copy(grown, pkt)
		pkt = grown
	}
	seq := binary.BigEndian.Uint16(pkt[2:])
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	st := s.stream(ssrc)
	roc, diff, exhausted := st.next(seq)
	if exhausted {
		return nil, errSRTPExhaust
	}
	st.update(seq, diff)

	s.crypt(pkt[hdr:n], ssrc, roc, seq)

	// The ROC is hashed from where the tag goes, contiguous with the
	// packet, and overwritten by the tag.
	full := pkt[:n+tagLen]
	binary.BigEndian.PutUint32(full[n:], roc)
	s.tag(full[:n+srtpROCLen], full[n:])
	return full, nil
}

// crypt XORs the payload p of packet index roc<<16|seq from ssrc with its
// keystream: encrypts or decrypts it in place.
func (s *srtpSession) crypt(p []byte, ssrc, roc uint32, seq uint16) {
	// RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16);
	// the keystream's block j is AES(IV + j), and j fits in IV's low 16
	// bits, which are zero.
	var iv [aes.BlockSize]byte
	copy(iv[:], s.salt[:])
	binary.BigEndian.PutUint32(iv[4:], binary.BigEndian.Uint32(iv[4:])^ssrc)
	binary.BigEndian.PutUint32(iv[8:], binary.BigEndian.Uint32(iv[8:])^roc)
	binary.BigEndian.PutUint16(iv[12:], binary.BigEndian.Uint16(iv[12:])^seq)
	if s.fastAES {
		s.xorKeyStream(p, &iv)
	} else {
		s.slow.xorKeyStream(p, &iv)
	}
}

// tag writes to out the first len(out) bytes of the authentication tag
// of msg, the authenticated portion and the ROC (RFC 3711 §4.2: HMAC(k_a,
// packet || ROC), cut to the suite's length).
func (s *srtpSession) tag(msg, out []byte) {
	if s.fastSHA {
		s.mac(msg, out)
	} else {
		copy(out, s.slow.mac(msg))
	}
}

// xorKeyStream XORs p with the keystream from iv (RFC 3711 §4.1.1), made
// with AES instructions four blocks at a time: the counter blocks are
// written and encrypted in place, a spare block or two costing less than
// another pass.
func (s *srtpSession) xorKeyStream(p []byte, iv *[aes.BlockSize]byte) {
	var ks [12 * aes.BlockSize]byte
	for j := 0; len(p) > 0; {
		m := min((len(p)+63)&^63, len(ks))
		for b := 0; b < m; b += aes.BlockSize {
			copy(ks[b:b+14], iv[:14])
			binary.BigEndian.PutUint16(ks[b+14:], uint16(j))
			j++
		}
		s.rk.encryptBlocks(ks[:m], ks[:m])
		p = p[subtle.XORBytes(p, p, ks[:min(m, len(p))]):]
	}
}

// xorKeyStream is the sender's xorKeyStream with crypto/aes, one
// block.Encrypt a block.
func (sl *srtpSlow) xorKeyStream(p []byte, iv *[aes.BlockSize]byte) {
	sl.iv = *iv
	for j := 0; len(p) > 0; {
		m := 0
		for ; m < len(sl.ks) && m < len(p); m += aes.BlockSize {
			binary.BigEndian.PutUint16(sl.iv[14:], uint16(j))
			sl.block.Encrypt(sl.ks[m:], sl.iv[:])
			j++
		}
		p = p[subtle.XORBytes(p, p, sl.ks[:min(m, len(p))]):]
	}
}

// mac writes to tag the first len(tag) bytes of HMAC-SHA1 over msg under
// the session authentication key, with sha1Blocks: SHA-1 from the ipad
// state over msg and its padding (FIPS 180-4 §5.1.1, the length counting
// the ipad block), then from the opad state over the inner digest.
func (s *srtpSession) mac(msg, tag []byte) {
	h := s.ipadState
	whole := len(msg) &^ 63
	if whole > 0 {
		sha1Blocks(&h, msg[:whole])
	}
	var last [2 * sha1.BlockSize]byte
	rest := copy(last[:], msg[whole:])
	last[rest] = 0x80
	end := sha1.BlockSize
	if rest+1+8 > sha1.BlockSize {
		end = 2 * sha1.BlockSize
	}
	binary.BigEndian.PutUint64(last[end-8:], uint64(sha1.BlockSize+len(msg))*8)
	sha1Blocks(&h, last[:end])

	o := s.opadState
	var outer [sha1.BlockSize]byte
	for i, v := range h {
		binary.BigEndian.PutUint32(outer[4*i:], v)
	}
	outer[sha1.Size] = 0x80
	binary.BigEndian.PutUint64(outer[sha1.BlockSize-8:], (sha1.BlockSize+sha1.Size)*8)
	sha1Blocks(&o, outer[:])
	var sum [sha1.Size]byte
	for i, v := range o {
		binary.BigEndian.PutUint32(sum[4*i:], v)
	}
	copy(tag, sum[:])
}

// mac returns HMAC-SHA1 over msg under the session authentication key, in
// sl.sum, with crypto/hmac.
func (sl *srtpSlow) mac(msg []byte) []byte {
	sl.hmac.Reset()
	sl.hmac.Write(msg)
	return sl.hmac.Sum(sl.sum[:0])
}

// rtpHeaderLen returns the length of pkt's RTP header: the fixed part,
// the CSRCs and the extension, all of which SRTP leaves in the clear.
func rtpHeaderLen(pkt []byte) (int, bool) {
	if len(pkt) < rtpHeaderSize {
		return 0, false
	}
	n := rtpHeaderSize + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 {
		if len(pkt) < n+4 {
			return 0, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(pkt[n+2:]))
	}
	return n, n <= len(pkt)
}

// stream returns ssrc's rollover state, a new one for an SSRC not sent
// before.
func (s *srtpSender) stream(ssrc uint32) *srtpIndex {
	if s.first.ssrc == ssrc && s.first.used {
		return &s.first
	}
	if !s.first.used {
		s.first = srtpIndex{ssrc: ssrc, used: true}
		return &s.first
	}
	for i := range s.more {
		if s.more[i].ssrc == ssrc {
			return &s.more[i]
		}
	}
	s.more = append(s.more, srtpIndex{ssrc: ssrc, used: true})
	return &s.more[len(s.more)-1]
}

// next returns the rollover counter for seq, the step from the highest
// index so far to seq's, and whether the 48-bit index ran out (pion's
// nextRolloverCount: RFC 3711 §3.3.1 with the highest index so far as
// s_l, for the sender as for the receiver).
func (st *srtpIndex) next(seq uint16) (roc uint32, diff int32, exhausted bool) {
	localROC := uint32(st.index >> 16)
	localSeq := int32(st.index & (seqSpan - 1))
	s := int32(seq)
	roc = localROC
	if st.started {
		switch {
		case st.index <= seqHalf:
			diff = s - localSeq
		case localSeq < seqHalf && s-localSeq > seqHalf:
			roc, diff = localROC-1, s-localSeq-seqSpan
		case localSeq >= seqHalf && localSeq-seqHalf > s:
			roc, diff = localROC+1, s-localSeq+seqSpan
		default:
			diff = s - localSeq
		}
	}
	return roc, diff, roc == 0 && localROC == 1<<32-1
}

// update moves the highest index sent on to seq's if seq is ahead.
func (st *srtpIndex) update(seq uint16, diff int32) {
	switch {
	case !st.started:
		st.index |= uint64(seq)
		st.started = true
	case diff > 0:
		st.index += uint64(diff)
	}
}
