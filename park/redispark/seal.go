package redispark

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/callpark/callpark/orbit"
)

// Sealing (issue 17): a handoff holds what continues a parked party's
// dialog (Call-ID, tags, route set, target), which whoever reads Redis
// could use to end or hijack the call, and whoever writes Redis could bend
// to send a node's re-INVITE elsewhere. With Config.HandoffKey, the key
// the cluster's nodes share, each handoff is sealed where it crosses into
// Redis (AES-256-GCM, a fresh random nonce per write) with the record it
// belongs to as associated data (the cluster, the orbit, the park ID), so
// that it neither reads nor moves to another record. SRTP keys are never
// in a handoff, sealed or not (sipadapter hands the suite only).
//
// A sealed handoff is sealPrefix, the nonce, then the ciphertext and its
// tag. A handoff in the clear is what the leg wrote (sipadapter's is JSON,
// never starting with sealPrefix's first byte).

// HandoffKeyLen is the length of Config.HandoffKey: an AES-256 key.
const HandoffKeyLen = 32

// sealPrefix marks a sealed handoff, and its format's version.
var sealPrefix = []byte{0xC5, 'c', 'p', '1'}

// The errors of a handoff this node cannot read; a call taken over with
// one ends as park.Lost. Test them with errors.Is.
var (
	// ErrHandoffSealed: the handoff is sealed and this node has no
	// Config.HandoffKey.
	ErrHandoffSealed = errors.New("redispark: the call's handoff is sealed and this node has no cluster key")
	// ErrHandoffKey: the handoff does not open with this node's key:
	// another key sealed it, or it was moved from another record.
	ErrHandoffKey = errors.New("redispark: the call's handoff does not open with this node's cluster key")
	// ErrHandoffClear: this node has a key and the handoff is in the clear.
	// A node with a key reads sealed handoffs only, or whoever can write
	// Redis could put a handoff of its own in a record.
	ErrHandoffClear = errors.New("redispark: the call's handoff is not sealed and this node has a cluster key")
)

// sealer seals and opens handoffs with the cluster's key; a nil sealer
// leaves them in the clear.
type sealer struct {
	aead    cipher.AEAD
	cluster string
}

func newSealer(key []byte, cluster string) (*sealer, error) {
	if key == nil {
		return nil, nil
	}
	if len(key) != HandoffKeyLen {
		return nil, fmt.Errorf("%w: Config.HandoffKey is %d bytes, want %d", ErrInvalidConfig, len(key), HandoffKeyLen)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: Config.HandoffKey: %w", ErrInvalidConfig, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: Config.HandoffKey: %w", ErrInvalidConfig, err)
	}
	return &sealer{aead: aead, cluster: cluster}, nil
}

// binding is the associated data of the handoff of call parkID in o.
func (s *sealer) binding(o orbit.Orbit, parkID string) []byte {
	b := make([]byte, 0, 64)
	b = append(b, "callpark handoff\x00"...)
	b = append(b, s.cluster...)
	b = append(b, 0)
	b = append(b, o...)
	b = append(b, 0)
	return append(b, parkID...)
}

// seal returns h sealed for the record of call parkID in o; nil stays nil.
func (s *sealer) seal(h []byte, o orbit.Orbit, parkID string) []byte {
	if s == nil || len(h) == 0 {
		return h
	}
	ns := s.aead.NonceSize()
	out := make([]byte, len(sealPrefix)+ns, len(sealPrefix)+ns+len(h)+s.aead.Overhead())
	copy(out, sealPrefix)
	_, _ = rand.Read(out[len(sealPrefix):]) // never fails (crypto/rand, Go 1.24)
	return s.aead.Seal(out, out[len(sealPrefix):], h, s.binding(o, parkID))
}

// open returns the handoff of the record of call parkID in o, as the leg
// wrote it.
func (s *sealer) open(h []byte, o orbit.Orbit, parkID string) ([]byte, error) {
	sealed := bytes.HasPrefix(h, sealPrefix)
	switch {
	case len(h) == 0:
		return h, nil
	case s == nil && sealed:
		return nil, ErrHandoffSealed
	case s == nil:
		return h, nil
	case !sealed:
		return nil, ErrHandoffClear
	}
	ns := s.aead.NonceSize()
	body := h[len(sealPrefix):]
	if len(body) < ns+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrHandoffKey, len(h))
	}
	plain, err := s.aead.Open(nil, body[:ns], body[ns:], s.binding(o, parkID))
	if err != nil {
		return nil, ErrHandoffKey
	}
	return plain, nil
}
