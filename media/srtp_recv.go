package media

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"errors"

	"github.com/pion/rtp"
	"github.com/pion/transport/v5/replaydetector"
)

// The receiving half of SRTP's AES_CM_128_HMAC_SHA1_80 and _32 transforms,
// with the same session (srtp_send.go) as the sending half: what pion's
// DecryptRTP does for a context with a replay window, an optional MKI and
// no cryptex or ROC in the packet, step for step and decision for decision
// (srtp_recv_test.go checks both against it), at the sender's speed. The
// header is parsed with pion's rtp.Header, so that what is a well-formed
// packet is pion's call as before, and replays are caught by pion's
// replay detector.

var (
	errSRTPTooShort  = errors.New("media: SRTP: packet shorter than its header, MKI and tag")
	errSRTPReplayed  = errors.New("media: SRTP: replayed or too late for the replay window")
	errSRTPCryptex   = errors.New("media: SRTP: cryptex (RFC 9335) header, not negotiated")
	errSRTPMKI       = errors.New("media: SRTP: unknown MKI")
	errSRTPAuthTag   = errors.New("media: SRTP: authentication tag mismatch")
	errSRTPDetectors = errors.New("media: SRTP: replay detector cannot check before accepting")
)

// srtpReceiver authenticates and decrypts one leg's incoming packets under
// one master key. It is not safe for concurrent use (srtpIn is used under
// the leg's relayMu).
type srtpReceiver struct {
	srtpSession
	mki    []byte
	window uint

	hdr rtp.Header // scratch for parsing, reused so that it allocates nothing

	// first is the state of the first SSRC that authenticated, more those
	// of any others (a peer sends one at a time). An SSRC gets state only
	// once a packet from it authenticates.
	first *srtpRecvStream
	more  map[uint32]*srtpRecvStream
}

// srtpRecvStream is one SSRC's highest index received (tracked as pion's
// receiver tracks it) and its replay window.
type srtpRecvStream struct {
	seq    srtpIndex
	replay replaydetector.CheckAccepter
}

func newSRTPReceiver(suite SRTPSuite, key SRTPKey, mki []byte, window uint) (*srtpReceiver, error) {
	r := &srtpReceiver{mki: bytes.Clone(mki), window: window}
	if err := r.init(suite, key); err != nil {
		return nil, err
	}
	return r, nil
}

// unprotect authenticates the SRTP packet pkt and decrypts it in place,
// returning the RTP packet (pkt without MKI and tag). A packet that fails
// leaves pkt as it was and the receiver's state unchanged.
func (r *srtpReceiver) unprotect(pkt []byte) ([]byte, error) {
	hdrLen, err := r.hdr.Unmarshal(pkt)
	if err != nil {
		return nil, err
	}
	tagLen := int(r.tagLen)
	n := len(pkt) - len(r.mki) - tagLen // the authenticated portion
	if n < hdrLen {
		return nil, errSRTPTooShort
	}
	seq, ssrc := r.hdr.SequenceNumber, r.hdr.SSRC

	// The SSRC is not authenticated yet: look, do not add.
	st := r.stream(ssrc)
	var (
		roc  uint32
		diff int32
		tok  replaydetector.Token
	)
	if st != nil {
		roc, diff, _ = st.seq.next(seq)
		// Before the tag, as pion does: a flood of replays costs no
		// crypto. The window only moves on Accept, after the tag.
		tok = st.replay.CheckSeq(uint64(roc)<<16 | uint64(seq))
		if !tok.Passed() {
			return nil, errSRTPReplayed
		}
	}
	if r.hdr.Extension && (r.hdr.ExtensionProfile == rtp.CryptexProfileOneByte ||
		r.hdr.ExtensionProfile == rtp.CryptexProfileTwoByte) {
		return nil, errSRTPCryptex
	}
	if len(r.mki) > 0 && !bytes.Equal(pkt[n:n+len(r.mki)], r.mki) {
		return nil, errSRTPMKI
	}

	// The ROC is hashed from just after the authenticated portion, over
	// the MKI and tag (at least 4 bytes), which are put back after.
	var got, want, saved [srtpROCLen + srtpTrailerMax]byte
	copy(got[:], pkt[len(pkt)-tagLen:])
	copy(saved[:], pkt[n:n+srtpROCLen])
	binary.BigEndian.PutUint32(pkt[n:], roc)
	r.tag(pkt[:n+srtpROCLen], want[:tagLen])
	copy(pkt[n:], saved[:srtpROCLen])
	if subtle.ConstantTimeCompare(got[:tagLen], want[:tagLen]) != 1 {
		return nil, errSRTPAuthTag
	}
	r.crypt(pkt[hdrLen:n], ssrc, roc, seq)

	if st == nil {
		if st, err = r.add(ssrc); err != nil {
			return nil, err
		}
		tok = st.replay.CheckSeq(uint64(seq)) // a new window takes any index
	}
	st.replay.Accept(tok)
	st.seq.update(seq, diff)
	return pkt[:n], nil
}

// stream returns ssrc's state, nil if no packet from it authenticated.
func (r *srtpReceiver) stream(ssrc uint32) *srtpRecvStream {
	if r.first != nil && r.first.seq.ssrc == ssrc {
		return r.first
	}
	return r.more[ssrc]
}

// add gives ssrc state, on its first packet that authenticated.
func (r *srtpReceiver) add(ssrc uint32) (*srtpRecvStream, error) {
	// pion's SRTP indexes: 2^32-1 rollovers of 2^16 sequence numbers.
	det, ok := replaydetector.New(r.window, 1<<48-1).(replaydetector.CheckAccepter)
	if !ok {
		return nil, errSRTPDetectors
	}
	st := &srtpRecvStream{seq: srtpIndex{ssrc: ssrc, used: true}, replay: det}
	if r.first == nil {
		r.first = st
		return st, nil
	}
	if r.more == nil {
		r.more = make(map[uint32]*srtpRecvStream)
	}
	r.more[ssrc] = st
	return st, nil
}
