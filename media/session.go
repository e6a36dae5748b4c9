package media

import (
	"bytes"
	"sync"
	"time"
)

// Session is one call leg's side of SDP offer/answer for the life of its
// dialog: the o= session id, a version raised only when what the leg sends
// changes (RFC 3264 §8: a re-INVITE that changes nothing is answered with the
// same version), and the last body sent. Both a park server and a PBX answer
// holds, resumes and refreshes this way, so the rule lives here once.
//
// A Session is safe for concurrent use.
type Session struct {
	mu    sync.Mutex
	local LocalMedia
	last  []byte // the last description sent; nil before the first
}

// NewSession starts a leg's session at local. A zero SessionID is taken
// from the clock (microseconds), as RFC 4566 suggests, and a zero
// SessionVersion starts at the id.
func NewSession(local LocalMedia) *Session {
	if local.SessionID == 0 {
		local.SessionID = uint64(time.Now().UnixNano() / 1000)
	}
	if local.SessionVersion == 0 {
		local.SessionVersion = local.SessionID
	}
	return &Session{local: local}
}

// Answer answers offer as Answer does, with the session's o= line: the
// version stays when the answer is the same as the last description sent
// and goes up by one when it differs.
func (s *Session) Answer(offer *RemoteMedia, stance Direction) ([]byte, Negotiated, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if offer != nil && s.local.SRTPKey.IsZero() && s.local.SRTP != SRTPOff && (offer.Secure() || offer.alt != nil) {
		// One key for the dialog: every answer of the leg says the same,
		// and the leg's SRTP context goes on under it.
		s.local.SRTPKey = NewSRTPKey()
	}
	local := s.local
	body, n, err := Answer(offer, local, stance)
	if err != nil {
		return nil, Negotiated{}, err
	}
	if s.last != nil && !bytes.Equal(body, s.last) {
		local.SessionVersion++
		if body, n, err = Answer(offer, local, stance); err != nil {
			return nil, Negotiated{}, err
		}
		s.local.SessionVersion = local.SessionVersion
	}
	s.last = body
	// Our next offer (a re-INVITE) keeps the stream's kind and key.
	s.local.SRTPSuite = 0
	if n.SRTP != nil {
		s.local.SRTPSuite = n.SRTP.Suite
	}
	return body, n, nil
}

// Offer makes an offer with direction dir, offering codecs (none: the
// session's own list), as NewOffer does. Any offer after the first
// description carries the next version.
func (s *Session) Offer(dir Direction, codecs ...Codec) (*Offer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	local := s.local
	if len(codecs) > 0 {
		local.Codecs = codecs
	}
	if s.last != nil {
		local.SessionVersion++
	}
	o, err := NewOffer(local, dir)
	if err != nil {
		return nil, err
	}
	s.local.SessionVersion = local.SessionVersion
	s.last = o.SDP()
	return o, nil
}

// Origin returns the o= line's session id and the version of the last
// description sent: what another node continuing the leg's call needs, so
// that its first offer keeps the id and raises the version (a session
// started with SessionVersion set to version+1).
func (s *Session) Origin() (id, version uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local.SessionID, s.local.SessionVersion
}

// Last returns the last description sent, nil before the first.
func (s *Session) Last() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Apply sets what an offer/answer exchange agreed on the endpoint: where to
// send, the codec and payload types, whether the peer holds the call, and
// the SRTP keys.
func (e *Endpoint) Apply(n Negotiated) error {
	if err := e.SetSRTP(n.SRTP); err != nil {
		return err
	}
	e.SetRemote(n.Remote)
	if n.RemoteHold {
		e.Hold()
	} else {
		e.Unhold()
	}
	return e.SetCodec(n.Codec, n.PayloadType, n.TelephoneEvent)
}
