package redispark

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, HandoffKeyLen) }

func TestSealer(t *testing.T) {
	s, err := newSealer(testKey(1), "callpark")
	require.NoError(t, err)
	h := []byte(`{"call_id":"abc"}`)
	sealed := s.seal(h, "701", "p1")
	require.NotContains(t, string(sealed), "abc")
	require.NotEqual(t, sealed, s.seal(h, "701", "p1"), "a fresh nonce per write")
	got, err := s.open(sealed, "701", "p1")
	require.NoError(t, err)
	require.Equal(t, h, got)
	require.Nil(t, s.seal(nil, "701", "p1"), "no handoff stays none")

	other, err := newSealer(testKey(2), "callpark")
	require.NoError(t, err)
	otherCluster, err := newSealer(testKey(1), "lot2")
	require.NoError(t, err)
	var none *sealer
	tests := []struct {
		name   string
		s      *sealer
		h      []byte
		o      orbit.Orbit
		parkID string
		want   error
	}{
		{"another key", other, sealed, "701", "p1", ErrHandoffKey},
		{"another cluster", otherCluster, sealed, "701", "p1", ErrHandoffKey},
		{"moved to another orbit", s, sealed, "702", "p1", ErrHandoffKey},
		{"moved to another park", s, sealed, "701", "p2", ErrHandoffKey},
		{"altered", s, append(bytes.Clone(sealed[:len(sealed)-1]), sealed[len(sealed)-1]^1), "701", "p1", ErrHandoffKey},
		{"truncated", s, sealed[:10], "701", "p1", ErrHandoffKey},
		{"no key here", none, sealed, "701", "p1", ErrHandoffSealed},
		{"in the clear, a key here", s, h, "701", "p1", ErrHandoffClear},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.s.open(tt.h, tt.o, tt.parkID)
			require.ErrorIs(t, err, tt.want)
		})
	}
	got, err = none.open(h, "701", "p1")
	require.NoError(t, err, "no key, in the clear: as before")
	require.Equal(t, h, got)

	_, err = newSealer([]byte("short"), "callpark")
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "HandoffKey")
}

// With the cluster's key, what Redis holds of a handoff is sealed, and a
// node with the same key takes the call over from it, on a death as on a
// stop.
func TestSealedHandoffIsTakenOver(t *testing.T) {
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	key := testKey(7)
	a := startSealedNode(t, m.Addr(), "a", 2*time.Second, key)
	adB := &adopter{node: "b"}
	b := startSealedNode(t, m.Addr(), "b", time.Minute, key, withAdopter(adB))
	ctx := context.Background()
	const secret = "dialog at a: Call-ID and tags"
	call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &portable{handoff: secret}})
	require.NoError(t, err)
	o := call.Orbit()
	var rec string
	eventually(t, "the record is written", func() bool {
		rec = m.HGet("{callpark:callpark}:calls", string(o))
		return strings.Contains(rec, `"handoff":`)
	})
	require.NotContains(t, rec, base64.StdEncoding.EncodeToString([]byte(secret))[:12], "sealed in Redis")
	require.NotContains(t, rec, "dialog at a")
	eventually(t, "b hears the park", func() bool { _, ok := b.lot.Lookup(o); return ok })

	m.SetTime(now.Add(3 * time.Second))
	eventually(t, "b takes the call over", func() bool { return len(adB.adopted()) == 1 })
	require.Equal(t, secret, string(adB.adopted()[0].Handoff), "opened with the key")
	eventually(t, "b's lot holds it", func() bool { info, ok := b.lot.Lookup(o); return ok && info.Node == "" })
	eventually(t, "b's handoff is written sealed", func() bool {
		rec = m.HGet("{callpark:callpark}:calls", string(o))
		return strings.Contains(rec, `"node":"b"`) && strings.Contains(rec, `"handoff":`)
	})
	require.NotContains(t, rec, base64.StdEncoding.EncodeToString([]byte("continued at b"))[:12])

	// b stops: c, with the key, takes the call, sealed by b, over.
	adC := &adopter{node: "c"}
	c := startSealedNode(t, m.Addr(), "c", time.Minute, key, withAdopter(adC))
	eventually(t, "c hears the call", func() bool { _, ok := c.lot.Lookup(o); return ok })
	require.NoError(t, b.lot.Shutdown(ctx))
	eventually(t, "c takes the call over", func() bool { return len(adC.adopted()) == 1 })
	require.Equal(t, "continued at b", string(adC.adopted()[0].Handoff))
}

// A node without the cluster's key, or with another, cannot take over a
// call whose handoff is sealed, nor can a node with a key take over one in
// the clear: the call ends as Lost, once, with the reason, and its orbit
// is free again. The Adopter is never asked.
func TestUnreadableHandoffIsLostOnce(t *testing.T) {
	tests := []struct {
		name       string
		keyA, keyB []byte
	}{
		{"b has no key", testKey(1), nil},                 // ErrHandoffSealed, logged
		{"b has another key", testKey(1), testKey(2)},     // ErrHandoffKey
		{"a seals nothing, b has a key", nil, testKey(2)}, // ErrHandoffClear
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
			m.SetTime(now)
			a := startSealedNode(t, m.Addr(), "a", 2*time.Second, tt.keyA)
			adB := &adopter{node: "b"}
			b := startSealedNode(t, m.Addr(), "b", time.Minute, tt.keyB, withAdopter(adB))
			c := startSealedNode(t, m.Addr(), "c", time.Minute, tt.keyA) // takes nothing over, watches
			ctx := context.Background()
			call, err := a.lot.Park(ctx, park.ParkRequest{Leg: &portable{handoff: "h"}})
			require.NoError(t, err)
			eventually(t, "c hears the park", func() bool { _, ok := c.lot.Lookup(call.Orbit()); return ok })
			eventually(t, "b hears the park", func() bool { _, ok := b.lot.Lookup(call.Orbit()); return ok })

			m.SetTime(now.Add(3 * time.Second))
			eventually(t, "b's end is heard at c", func() bool { n, _ := c.heard.ends(call.ID()); return n == 1 })
			_, e := c.heard.ends(call.ID())
			require.Equal(t, park.Lost, e.Outcome)
			require.ErrorContains(t, e.Err, "handoff", "with the reason")
			require.Empty(t, adB.adopted(), "nothing to adopt")
			time.Sleep(100 * time.Millisecond)
			n, _ := c.heard.ends(call.ID())
			require.Equal(t, 1, n, "exactly one end")
			o, err := c.alloc.Allocate(ctx)
			require.NoError(t, err)
			require.Equal(t, call.Orbit(), o, "the orbit is free again")
		})
	}
}
