package sipadapter_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park/redispark"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// Issue 17: a takeover of an SRTP call resumes encrypted music. Node A
// parks an SRTP call and falls silent past its lease; B takes the call
// over with a re-INVITE offering RTP/SAVP with a fresh key of its own (not
// A's: no key is handed over, and none is written to Redis), the phone
// answers with its key, and the music it hears from B authenticates under
// B's key and crosses the wire encrypted. With and without a cluster key
// sealing the handoff.
func TestTakeoverOfAnSRTPCallResumesEncryptedMusic(t *testing.T) {
	for _, sealed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sealed=%v", sealed), func(t *testing.T) { testSRTPTakeover(t, sealed) })
	}
}

func testSRTPTakeover(t *testing.T, sealed bool) {
	var key []byte
	if sealed {
		key = bytes.Repeat([]byte{0x5a}, redispark.HandoffKeyLen)
	}
	m := miniredis.RunT(t)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m.SetTime(now)
	a := sealedClusterNode(t, m, "a", sipadapter.Config{}, 12000, 2*time.Second, key)
	b := sealedClusterNode(t, m, "b", sipadapter.Config{}, 12500, time.Minute, key)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 30*time.Second)
	music, err := media.Tone("test music", 440, time.Second) // the nodes' music (clusterNodeLease)
	require.NoError(t, err)
	frames := music.Frames(media.PCMU)

	parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{SRTP: media.SuiteAESCM128SHA1_80, KeepAudio: true, KeepWire: true})
	require.NoError(t, err)
	o := orbit.Orbit(parked.Orbit())
	require.NoError(t, parked.WaitReceived(ctx, 10))
	before := parked.Negotiated().SRTP
	require.NotNil(t, before)

	// What A writes to Redis names the suite and holds no key.
	var rec string
	waitUntil(t, 10*time.Second, "the call's record in Redis has its handoff", func() bool {
		rec = m.HGet("{callpark:callpark}:calls", string(o))
		return strings.Contains(rec, `"handoff":`)
	})
	info, ok := a.Lot().Lookup(o)
	require.True(t, ok)
	require.Contains(t, string(info.Handoff), `"srtp":"AES_CM_128_HMAC_SHA1_80"`)
	for _, k := range []media.SRTPKey{before.Local, before.Remote} {
		b64 := base64.StdEncoding.EncodeToString(k[:])
		require.NotContains(t, string(info.Handoff), strings.TrimRight(b64, "="), "no key in the handoff")
		require.NotContains(t, rec, strings.TrimRight(b64, "="), "no key in the record")
	}
	require.NotContains(t, string(info.Handoff), "inline:")
	dump := dumpRedis(t, m)
	require.Equal(t, !sealed, strings.Contains(dump, `"srtp":"AES_CM_128_HMAC_SHA1_80"`), "the dump reads the handoff when it is in the clear")
	require.NotContains(t, dump, "a=crypto", "no SDP in Redis")
	require.NotContains(t, dump, "inline:")
	for _, k := range []media.SRTPKey{before.Local, before.Remote} {
		require.NotContains(t, dump, strings.TrimRight(base64.StdEncoding.EncodeToString(k[:]), "="), "no key anywhere in Redis")
	}
	require.Equal(t, sealed, !strings.Contains(rec, base64.StdEncoding.EncodeToString(info.Handoff)), "sealed in Redis with a key, in the clear without")
	waitUntil(t, 10*time.Second, "b hears of the call", func() bool { _, ok := b.Lot().Lookup(o); return ok })

	m.SetTime(now.Add(3 * time.Second)) // a's lease runs out
	waitUntil(t, 10*time.Second, "b holds the call", func() bool { got, ok := b.Lot().Lookup(o); return ok && got.Node == "" })
	waitUntil(t, 10*time.Second, "a forgets the call", func() bool { return a.Lot().Len() == 0 && a.OpenLegs() == 0 })
	require.Equal(t, "RTP/SAVP", parked.RemoteSDP().Proto, "b's re-INVITE offers SRTP")
	after := parked.Negotiated().SRTP
	require.NotNil(t, after, "the call stays SRTP")
	require.NotEqual(t, before.Remote, after.Remote, "b encrypts with a fresh key, not a's")
	require.Equal(t, media.SuiteAESCM128SHA1_80, after.Suite)
	got, _ := b.Lot().Lookup(o)
	require.Contains(t, string(got.Handoff), `"srtp":"AES_CM_128_HMAC_SHA1_80"`, "b's handoff says SRTP too")

	// a has closed its leg; a few of b's packets more and any of a's still
	// queued at the phone have been read (one socket, in order). From
	// then on every packet comes from b: count from there.
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+5))
	bad := parked.RTPStats().Unauthenticated
	heard, wire := len(parked.Heard()), len(parked.Wire())
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25), "music again, from b")
	require.Equal(t, bad, parked.RTPStats().Unauthenticated, "b's packets authenticate under b's key")
	newHeard, newWire := parked.Heard()[heard:], parked.Wire()[wire:]
	require.GreaterOrEqual(t, len(newHeard), 25)
	for i, p := range newHeard {
		require.True(t, isFrame(frames, p), "decrypted packet %d from b is no frame of the music", i)
	}
	require.GreaterOrEqual(t, len(newWire), 25)
	for i, p := range newWire {
		require.Len(t, p, 12+160+10, "packet %d from b: header, frame, 80-bit tag", i)
		require.False(t, isFrame(frames, p[12:12+160]), "packet %d from b carries a music frame in the clear", i)
	}
	select {
	case <-parked.Done():
		t.Fatal("the parked call ended")
	default:
	}
}

// dumpRedis returns every value Redis holds, one a line, base64 inside
// JSON decoded (a record's handoff) so that what it hides is searched too.
func dumpRedis(t *testing.T, m *miniredis.Miniredis) string {
	t.Helper()
	var b strings.Builder
	add := func(vals []string, err error) {
		require.NoError(t, err)
		for _, v := range vals {
			b.WriteString(v + "\n")
			var rec struct{ Handoff []byte }
			if json.Unmarshal([]byte(v), &rec) == nil {
				b.Write(rec.Handoff)
				b.WriteString("\n")
			}
		}
	}
	for _, k := range m.Keys() {
		b.WriteString(k + "\n")
		switch m.Type(k) {
		case "string":
			v, err := m.Get(k)
			add([]string{v}, err)
		case "hash":
			fields, err := m.HKeys(k)
			add(fields, err)
			for _, f := range fields {
				add([]string{m.HGet(k, f)}, nil)
			}
		case "set":
			add(m.Members(k))
		case "zset":
			add(m.ZMembers(k))
		case "list":
			add(m.List(k))
		default:
			t.Fatalf("key %s of type %s", k, m.Type(k))
		}
	}
	return b.String()
}
