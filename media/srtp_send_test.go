package media

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"testing"

	"github.com/pion/srtp/v3"
	"github.com/stretchr/testify/require"
)

// profile is pion's name for the suite, for the tests that check our
// transform against pion's.
func (s SRTPSuite) profile() srtp.ProtectionProfile {
	if s == SuiteAESCM128SHA1_32 {
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// RFC 3711 Appendix B.3: the AES-CM PRF's session keys for one master key.
func TestSRTPKDFVectors(t *testing.T) {
	unhex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		require.NoError(t, err)
		return b
	}
	master, err := aes.NewCipher(unhex("E1F97A0D3E018BE0D64FA32C06DE4139"))
	require.NoError(t, err)
	salt := unhex("0EC675AD498AFEEBB6960B3AABE6")
	for _, c := range []struct {
		label byte
		want  string
	}{
		{srtpLabelEncryption, "C61E7A93744F39EE10734AFE3FF7A087"},
		{srtpLabelSalt, "30CBBC08863D8C85D49DB34A9AE1"},
		{srtpLabelAuth, "CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"},
	} {
		out := make([]byte, len(c.want)/2)
		srtpKDF(master, salt, c.label, out)
		require.Equal(t, unhex(c.want), out, "label %d", c.label)
	}
}

// testSRTPKey returns a master key and salt drawn from r.
func testSRTPKey(r *rand.Rand) SRTPKey {
	var key SRTPKey
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	return key
}

// testRTP builds an RTP packet with a payload of n pseudo-random bytes, in a
// buffer with srtpTrailerMax bytes spare; csrcs and ext add the header parts
// SRTP leaves in the clear.
func testRTP(r *rand.Rand, seq uint16, ssrc uint32, n, csrcs, extWords int) []byte {
	hdr := rtpHeaderSize + 4*csrcs
	if extWords >= 0 {
		hdr += 4 + 4*extWords
	}
	pkt := make([]byte, hdr+n, hdr+n+srtpTrailerMax)
	for i := range pkt {
		pkt[i] = byte(r.Uint32())
	}
	pkt[0] = rtpVersion<<6 | byte(csrcs)
	if extWords >= 0 {
		pkt[0] |= 0x10
		ext := pkt[rtpHeaderSize+4*csrcs:]
		binary.BigEndian.PutUint16(ext, 0xbede) // RFC 8285's one-byte form, not cryptex
		binary.BigEndian.PutUint16(ext[2:], uint16(extWords))
		clear(ext[4 : 4+4*extWords]) // padding only, which pion parses
		if extWords > 0 {
			ext[4] = 0x10 | 0x01 // element 1, two bytes
		}
	}
	pkt[1] = byte(PCMU)
	binary.BigEndian.PutUint16(pkt[2:], seq)
	binary.BigEndian.PutUint32(pkt[8:], ssrc)
	return pkt
}

// srtpSeqs returns a run of sequence numbers as a sender might send them:
// mostly one up, across several rollover wraps, with jumps ahead (packets
// never sent), steps back (a packet sent late) and repeats.
func srtpSeqs(r *rand.Rand, n int) []uint16 {
	seqs := make([]uint16, 0, n)
	seq := uint16(65536 - 300)
	for len(seqs) < n {
		switch k := r.IntN(100); {
		case k < 2:
			// A jump ahead (packets never sent), short enough that a
			// receiver that also lost the packets around it still
			// tells the rollover counter (RFC 3711 §3.3.1: < 2^15).
			seq += uint16(1000 + r.IntN(3000))
		case k < 4:
			seqs = append(seqs, seq-uint16(1+r.IntN(200))) // a late one
			continue
		case k < 5: // a repeat
		default:
			seq++
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

// Our sender's packets are pion's, byte for byte, for both suites, across
// rollover counter wraps, jumps, late packets, several SSRCs, CSRCs and
// header extensions; and pion's receiver authenticates and decrypts them.
func TestSRTPSenderMatchesPion(t *testing.T) {
	for _, c := range []struct {
		name             string
		suite            SRTPSuite
		slowAES, slowSHA bool
	}{
		{"80", SuiteAESCM128SHA1_80, false, false},
		{"32", SuiteAESCM128SHA1_32, false, false},
		{"80-crypto-aes", SuiteAESCM128SHA1_80, true, false},
		{"80-crypto-sha1", SuiteAESCM128SHA1_80, false, true},
		{"32-crypto-both", SuiteAESCM128SHA1_32, true, true},
	} {
		suite := c.suite
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(17, uint64(suite)))
			key := testSRTPKey(r)
			ours, err := newSRTPSender(suite, key)
			require.NoError(t, err)
			if c.slowAES || c.slowSHA {
				// crypto/aes or crypto/sha1, as without AES-NI
				// or the SHA extensions
				master, err := aes.NewCipher(key[:srtpMasterKeyLen])
				require.NoError(t, err)
				var enc, auth [srtpAuthKeyLen]byte
				srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelEncryption, enc[:srtpMasterKeyLen])
				srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelAuth, auth[:])
				require.NoError(t, ours.setSlow(enc[:srtpMasterKeyLen], auth[:]))
				ours.fastAES = ours.fastAES && !c.slowAES
				ours.fastSHA = ours.fastSHA && !c.slowSHA
			}
			pionOut, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], suite.profile())
			require.NoError(t, err)
			pionIn, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], suite.profile())
			require.NoError(t, err)

			ssrcs := []uint32{0x11223344, 0xdeadbeef, 7}
			seqs := map[uint32][]uint16{}
			for _, ssrc := range ssrcs {
				seqs[ssrc] = srtpSeqs(r, 70000)
			}
			decrypted := 0
			for i := range 70000 {
				ssrc := ssrcs[0]
				if i%10 == 9 {
					ssrc = ssrcs[1+i%2]
				}
				seq := seqs[ssrc][i]
				size := 160
				csrcs, ext := 0, -1
				if i%7 == 0 {
					size = r.IntN(400)
					csrcs, ext = r.IntN(3), r.IntN(3)-1
				}
				plain := testRTP(r, seq, ssrc, size, csrcs, ext)
				want, err := pionOut.EncryptRTP(nil, plain, nil)
				require.NoError(t, err)
				got, err := ours.protect(append(make([]byte, 0, len(plain)+srtpTrailerMax), plain...))
				require.NoError(t, err)
				require.Equal(t, want, got, "packet %d (seq %d, ssrc %x)", i, seq, ssrc)

				dec, err := pionIn.DecryptRTP(nil, got, nil)
				if err == nil {
					decrypted++
					require.Equal(t, plain, dec, "packet %d decrypted", i)
				} else {
					// pion's receiver drops repeats and packets
					// too late for its window; only those.
					require.ErrorContains(t, err, "duplicated", "packet %d (seq %d)", i, seq)
				}
			}
			require.Greater(t, decrypted, 65000, "pion's receiver took most of them")
			require.GreaterOrEqual(t, ours.stream(ssrcs[0]).index>>16, uint64(2), "the run crosses rollover counter wraps")
		})
	}
}

// The AES-NI key schedule and blocks are crypto/aes's: FIPS 197 C.1, and
// random keys and blocks.
func TestAES128Blocks(t *testing.T) {
	key, _ := hex.DecodeString("000102030405060708090a0b0c0d0e0f")
	rk := newAES128Keys(key)
	if rk == nil {
		t.Skip("no AES instructions in this build")
	}
	buf := make([]byte, 64)
	copy(buf, []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff})
	rk.encryptBlocks(buf, buf)
	require.Equal(t, "69c4e0d86a7b0430d8cdb78070b4c55a", hex.EncodeToString(buf[:16]))

	r := rand.New(rand.NewPCG(9, 10))
	for range 200 {
		full := testSRTPKey(r)
		key := full[:16]
		rk := newAES128Keys(key)
		block, err := aes.NewCipher(key)
		require.NoError(t, err)
		src := make([]byte, 64*(1+r.IntN(4)))
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		got := make([]byte, len(src))
		rk.encryptBlocks(got, src)
		want := make([]byte, len(src))
		for i := 0; i < len(src); i += 16 {
			block.Encrypt(want[i:], src[i:])
		}
		require.Equal(t, want, got)
	}
}

// sha1Blocks with the HMAC's padding is crypto/hmac's HMAC-SHA1, for
// messages of every length around the block boundaries.
func TestSRTPSenderMAC(t *testing.T) {
	if !hasSHA1Blocks() {
		t.Skip("no SHA extensions in this build")
	}
	r := rand.New(rand.NewPCG(11, 12))
	key := make([]byte, srtpAuthKeyLen)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	s := &srtpSession{ipadState: sha1KeyedState(key, 0x36), opadState: sha1KeyedState(key, 0x5c)}
	for n := range 300 {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		h := hmac.New(sha1.New, key)
		h.Write(msg)
		want := h.Sum(nil)
		got := make([]byte, sha1.Size)
		s.mac(msg, got)
		require.Equal(t, want, got, "%d bytes", n)
	}
}

// A packet without room for the tag gets a new buffer; the one given is
// left as it was.
func TestSRTPSenderGrows(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := testSRTPKey(r)
	ours, err := newSRTPSender(SuiteAESCM128SHA1_80, key)
	require.NoError(t, err)
	pionOut, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], SuiteAESCM128SHA1_80.profile())
	require.NoError(t, err)
	plain := testRTP(r, 1, 2, 160, 0, -1)
	tight := bytes.Clone(plain)
	tight = tight[:len(tight):len(tight)]
	got, err := ours.protect(tight)
	require.NoError(t, err)
	want, err := pionOut.EncryptRTP(nil, plain, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Equal(t, plain, tight)
}

// A packet shorter than its header is refused, and does not move the
// rollover state.
func TestSRTPSenderShort(t *testing.T) {
	ours, err := newSRTPSender(SuiteAESCM128SHA1_80, testSRTPKey(rand.New(rand.NewPCG(7, 8))))
	require.NoError(t, err)
	for _, pkt := range [][]byte{
		nil,
		make([]byte, rtpHeaderSize-1),
		{0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3},          // one CSRC, cut
		{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},             // extension, cut
		{0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2}, // extension words, cut
	} {
		_, err := ours.protect(pkt)
		require.ErrorIs(t, err, errSRTPShort, "% x", pkt)
	}
	require.False(t, ours.first.used)
}

// The sender stops at the end of the 48-bit index (RFC 3711 §9.2), as
// pion's does.
func TestSRTPSenderExhausted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ours, err := newSRTPSender(SuiteAESCM128SHA1_80, testSRTPKey(r))
	require.NoError(t, err)
	_, err = ours.protect(testRTP(r, 65535, 9, 10, 0, -1))
	require.NoError(t, err)
	ours.first.index = 1<<48 - 1
	_, err = ours.protect(testRTP(r, 0, 9, 10, 0, -1))
	require.ErrorIs(t, err, errSRTPExhaust)
}

// Protecting a packet allocates nothing.
func TestSRTPSenderAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	out, err := newSRTPOut(SuiteAESCM128SHA1_80, testSRTPKey(r))
	require.NoError(t, err)
	pkt := testRTP(r, 0, 1, 160, 0, -1)
	seq := uint16(0)
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		binary.BigEndian.PutUint16(pkt[2:], seq)
		if _, err := out.protect(pkt); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}
