package media

import (
	"errors"
	"fmt"
	"sync"
)

// SRTP (RFC 3711) on a call leg. A leg with keys (EndpointOptions.SRTP,
// SetSRTP) encrypts everything it sends with its own key (music, prompts
// and relayed audio alike) and decrypts what it reads with the peer's. The
// music stays encoded once and shared: each packet is built in the shard's
// buffer (or its sendmmsg batch) as for a plain leg and encrypted there, in
// place, just before it leaves; a relayed packet is decrypted in its read
// buffer and encrypted again in the same buffer for the other leg, when
// that leg is SRTP too.
//
// RTCP is not sent by this package, and what arrives (SRTCP included) is
// dropped as before, so there is no SRTCP.

// srtpTrailerMax is the most SRTP adds after a packet this package sends:
// the 80-bit tag (no MKI on what we send).
const srtpTrailerMax = 10

// srtpReplayWindow is how many packets back the replay check of incoming
// SRTP remembers (RFC 3711 §3.3.2 wants at least 64).
const srtpReplayWindow = 128

// errUnauthenticated is what a failed decryption counts as; the wrapped
// error says why.
var errUnauthenticated = errors.New("media: SRTP packet failed authentication")

// srtpOut encrypts what one leg sends. A leg keeps it for its life (and
// across plain spells, for as long as its key is the same), because the
// context holds the rollover counter of the leg's one SSRC: a fresh context
// under the same key would reuse keystream after a sequence wrap. The music
// stream (on its shard) and the relay (on the other leg's read goroutine)
// take turns with it; mu makes that safe whatever the handover.
type srtpOut struct {
	suite SRTPSuite
	key   SRTPKey

	mu     sync.Mutex
	sender *srtpSender // our own transform (srtp_send.go), not pion's
}

func newSRTPOut(suite SRTPSuite, key SRTPKey) (*srtpOut, error) {
	sender, err := newSRTPSender(suite, key)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP context: %w", err)
	}
	return &srtpOut{suite: suite, key: key, sender: sender}, nil
}

// protect encrypts the RTP packet pkt in place and returns it with its
// authentication tag appended, within pkt's capacity (the callers' buffers
// keep srtpTrailerMax bytes spare; it would allocate otherwise).
func (o *srtpOut) protect(pkt []byte) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sender.protect(pkt)
}

// srtpIn decrypts what one leg reads. It is used under the leg's relayMu,
// which the read path holds for each packet.
type srtpIn struct {
	suite SRTPSuite
	key   SRTPKey
	mki   string
	recv  *srtpReceiver // our own transform (srtp_recv.go), not pion's
}

func newSRTPIn(k *SRTPKeys) (*srtpIn, error) {
	recv, err := newSRTPReceiver(k.Suite, k.Remote, k.RemoteMKI, srtpReplayWindow)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP context: %w", err)
	}
	return &srtpIn{suite: k.Suite, key: k.Remote, mki: string(k.RemoteMKI), recv: recv}, nil
}

// unprotect authenticates and decrypts the SRTP packet pkt in place and
// returns the RTP packet (pkt without its tag and MKI).
func (in *srtpIn) unprotect(pkt []byte) ([]byte, error) {
	out, err := in.recv.unprotect(pkt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnauthenticated, err)
	}
	return out, nil
}

// same reports whether in decrypts with k's remote key.
func (in *srtpIn) same(k *SRTPKeys) bool {
	return in.suite == k.Suite && in.key == k.Remote && in.mki == string(k.RemoteMKI)
}

// SRTP returns whether the leg is SRTP, and its suite.
func (e *Endpoint) SRTP() (SRTPSuite, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srtpOut == nil {
		return 0, false
	}
	return e.srtpOut.suite, true
}

// SetSRTP switches the leg to SRTP with keys k, to new keys, or to plain
// RTP (nil), for an offer/answer exchange that changed them (Apply calls
// it). Keys that did not change keep their contexts: the leg's outgoing
// stream goes on under the same rollover counter, and the peer's under the
// same replay window.
//
// Errors: ErrInvalidArgument (a bad suite, an unset key), ErrClosed.
func (e *Endpoint) SetSRTP(k *SRTPKeys) error {
	var (
		out *srtpOut
		in  *srtpIn
	)
	if k != nil {
		if err := k.check(); err != nil {
			return fmt.Errorf("SetSRTP: %w", err)
		}
	}
	// relayMu first (the read path's lock order): the incoming context is
	// only used under it.
	e.relayMu.Lock()
	defer e.relayMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if k != nil {
		var err error
		out = e.srtpOut
		if out == nil || out.suite != k.Suite || out.key != k.Local {
			// A leg that went plain and back under the same key gets its
			// old context back, rollover counter included.
			if kept := e.srtpKept; kept != nil && kept.suite == k.Suite && kept.key == k.Local {
				out = kept
			} else if out, err = newSRTPOut(k.Suite, k.Local); err != nil {
				return err
			}
		}
		in = e.srtpIn
		if in == nil || !in.same(k) {
			if in, err = newSRTPIn(k); err != nil {
				return err
			}
		}
	}
	if e.srtpOut != nil {
		e.srtpKept = e.srtpOut
	}
	e.srtpOut, e.srtpIn = out, in
	if e.music != nil {
		e.music.setProtect(out)
	}
	return nil
}
