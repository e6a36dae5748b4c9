package media

import (
	"bytes"
	"crypto/aes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/srtp/v3"
	"github.com/stretchr/testify/require"
)

// Our receiver takes what pion's takes and refuses what it refuses, with
// the same plaintext, packet after packet: pion-encrypted packets across
// rollover counter wraps, with jumps, late and repeated packets (replays,
// within the window and beyond it), packets from a second SSRC, bit flips
// anywhere, cut packets, cryptex headers, and a wrong MKI; for both suites,
// with and without an MKI, fast and crypto/* paths. A refused packet is
// left as it came.
func TestSRTPReceiverMatchesPion(t *testing.T) {
	for _, c := range []struct {
		name  string
		suite SRTPSuite
		mki   []byte
		slow  bool
	}{
		{"80", SuiteAESCM128SHA1_80, nil, false},
		{"32-mki", SuiteAESCM128SHA1_32, []byte{0, 0, 0, 7}, false},
		{"80-mki-crypto", SuiteAESCM128SHA1_80, []byte{0xab}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(23, uint64(len(c.name))))
			key := testSRTPKey(r)
			var opts []srtp.ContextOption
			if c.mki != nil {
				opts = append(opts, srtp.MasterKeyIndicator(c.mki))
			}
			sender, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], c.suite.profile(), opts...)
			require.NoError(t, err)
			pionIn, err := srtp.CreateContext(key[:srtpMasterKeyLen], key[srtpMasterKeyLen:], c.suite.profile(),
				append(opts, srtp.SRTPReplayProtection(srtpReplayWindow))...)
			require.NoError(t, err)
			ours, err := newSRTPReceiver(c.suite, key, c.mki, srtpReplayWindow)
			require.NoError(t, err)
			if c.slow {
				setSlowForTest(t, &ours.srtpSession, key)
			}

			ssrcs := []uint32{0x5eed, 0xbeef}
			seqs := [][]uint16{srtpSeqs(r, 60000), srtpSeqs(r, 60000)}
			var next [2]int
			var sent [][]byte // what went out, for replays
			accepted, refused := 0, 0
			for i := range 60000 {
				src := 0
				if i%50 == 49 {
					src = 1 // a second source, now and then
				}
				ssrc, seq := ssrcs[src], seqs[src][next[src]]
				next[src]++
				size, csrcs, ext := 160, 0, -1
				if i%11 == 0 {
					size, csrcs, ext = r.IntN(300), r.IntN(2), r.IntN(3)-1
				}
				plain := testRTP(r, seq, ssrc, size, csrcs, ext)
				if ext >= 0 && i%13 == 0 {
					// cryptex, which neither side negotiated
					binary.BigEndian.PutUint16(plain[rtpHeaderSize+4*csrcs:], 0xc0de)
				}
				pkt, err := sender.EncryptRTP(nil, plain, nil)
				require.NoError(t, err)
				sent = append(sent, pkt)

				switch k := r.IntN(100); {
				case k < 5: // a bit flipped anywhere
					pkt = bytes.Clone(pkt)
					pkt[r.IntN(len(pkt))] ^= 1 << r.IntN(8)
				case k < 7: // cut
					pkt = bytes.Clone(pkt[:r.IntN(len(pkt))])
				case k < 10 && len(sent) > 1: // a replay, recent or old
					pkt = bytes.Clone(sent[max(0, len(sent)-1-r.IntN(300))])
				case k < 11 && c.mki != nil: // another MKI
					pkt = bytes.Clone(pkt)
					pkt[len(pkt)-int(ours.tagLen)-1] ^= 0x40
				}

				want, wantErr := pionIn.DecryptRTP(nil, pkt, nil)
				buf := bytes.Clone(pkt)
				got, gotErr := ours.unprotect(buf)
				if wantErr != nil {
					require.Error(t, gotErr, "packet %d (seq %d): pion refused it: %v", i, seq, wantErr)
					require.Equal(t, pkt, buf, "packet %d: a refused packet is left as it came", i)
					refused++
					continue
				}
				require.NoError(t, gotErr, "packet %d (seq %d): pion took it", i, seq)
				require.Equal(t, want, got, "packet %d (seq %d)", i, seq)
				accepted++
			}
			require.Greater(t, accepted, 50000)
			require.Greater(t, refused, 3000)
			require.GreaterOrEqual(t, ours.stream(ssrcs[0]).seq.index>>16, uint64(2), "the run crosses rollover counter wraps")
		})
	}
}

// setSlowForTest turns s to crypto/aes and crypto/hmac, as without AES-NI
// and the SHA extensions.
func setSlowForTest(t testing.TB, s *srtpSession, key SRTPKey) {
	t.Helper()
	master, err := aes.NewCipher(key[:srtpMasterKeyLen])
	require.NoError(t, err)
	var enc [srtpMasterKeyLen]byte
	var auth [srtpAuthKeyLen]byte
	srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelEncryption, enc[:])
	srtpKDF(master, key[srtpMasterKeyLen:], srtpLabelAuth, auth[:])
	require.NoError(t, s.setSlow(enc[:], auth[:]))
	s.fastAES, s.fastSHA = false, false
}

// Decrypting a packet allocates nothing, once its SSRC is known.
func TestSRTPReceiverAllocs(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	key := testSRTPKey(r)
	out, err := newSRTPSender(SuiteAESCM128SHA1_80, key)
	require.NoError(t, err)
	in, err := newSRTPReceiver(SuiteAESCM128SHA1_80, key, nil, srtpReplayWindow)
	require.NoError(t, err)
	plain := testRTP(r, 0, 1, 160, 0, -1)
	pkt := make([]byte, 0, len(plain)+srtpTrailerMax)
	seq := uint16(0)
	step := func() {
		seq++
		binary.BigEndian.PutUint16(plain[2:], seq)
		pkt, err = out.protect(append(pkt[:0], plain...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.unprotect(pkt); err != nil {
			t.Fatal(err)
		}
	}
	step()
	require.Zero(t, testing.AllocsPerRun(1000, step))
}
