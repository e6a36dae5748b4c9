package sipadapter_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// isFrame reports whether p is one of f's frames.
func isFrame(f *media.Frames, p []byte) bool {
	for i := range f.Len() {
		if bytes.Equal(f.Payload(i), p) {
			return true
		}
	}
	return false
}

// An SRTP phone parks: its offer is answered RTP/SAVP with our own key,
// the music crosses the wire encrypted (no packet carries a music frame in
// the clear, each ends in the tag) and decrypts to the music's frames; a
// plain phone retrieves it and audio goes both ways through the relay,
// which decrypts on one side and encrypts on the other. With a port per
// leg and with the shared port (sendmmsg batches).
func TestSRTPParkAndRetrieve(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			music, err := media.Tone("test music", 440, time.Second)
			require.NoError(t, err)
			srv := testServer(t, sipadapter.Config{SharedRTPPort: shared, Park: parkConfigWithMusic(music)})
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Codecs: []media.Codec{media.PCMA}})
			ctx := ctxFor(t, 20*time.Second)

			parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{SRTP: media.SuiteAESCM128SHA1_80, KeepAudio: true, KeepWire: true})
			require.NoError(t, err)
			require.Equal(t, "RTP/SAVP", parked.RemoteSDP().Proto)
			keys := parked.Negotiated().SRTP
			require.NotNil(t, keys)
			require.NotEqual(t, keys.Local, keys.Remote, "the server answers with a key of its own")
			require.NoError(t, parked.WaitReceived(ctx, 20))

			frames := music.Frames(media.PCMU)
			wire, heard := parked.Wire(), parked.Heard()
			require.GreaterOrEqual(t, len(heard), 20)
			for i, p := range heard {
				require.True(t, isFrame(frames, p), "decrypted packet %d is no frame of the music", i)
			}
			for i, p := range wire {
				require.Len(t, p, 12+160+10, "packet %d: header, frame, 80-bit tag", i)
				require.False(t, isFrame(frames, p[12:12+160]), "packet %d carries a music frame in the clear", i)
			}
			require.Zero(t, parked.RTPStats().Unauthenticated)

			talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{KeepWire: true})
			require.NoError(t, err)
			require.Nil(t, talk.Negotiated().SRTP, "the retriever's leg stays plain")
			before := parked.Received()
			require.NoError(t, talk.WaitReceived(ctx, 25), "alice's tone reaches bob, decrypted")
			require.NoError(t, parked.WaitReceived(ctx, before+25), "bob's tone reaches alice, encrypted")
			for _, p := range talk.Wire() {
				require.Len(t, p, 12+160, "plain RTP to the plain phone")
			}
			wire = parked.Wire()
			for _, p := range wire[len(wire)-10:] {
				require.Len(t, p, 12+160+10, "relayed audio to alice is SRTP")
			}
			require.Zero(t, parked.RTPStats().Unauthenticated)
			require.Zero(t, talk.RTPStats().Unauthenticated)

			require.NoError(t, talk.Hangup(ctx))
			<-parked.Done()
		})
	}
}

func parkConfigWithMusic(music *media.Clip) park.Config { return park.Config{MusicOnHold: music} }

// sendInvite sends an INVITE to the park extension with body as its SDP
// and returns the final response.
func sendInvite(t *testing.T, ctx context.Context, srv *sipadapter.Server, from *parktest.Phone, body string) *sip.Response {
	t.Helper()
	var uri sip.Uri
	require.NoError(t, sip.ParseUri(srv.ParkURI(), &uri))
	invite := sip.NewRequest(sip.INVITE, uri)
	invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	invite.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(from.Addr().Port())}})
	invite.SetBody([]byte(body))
	res, err := from.Send(ctx, invite)
	require.NoError(t, err)
	return res
}

func savpOffer(crypto string) string {
	return "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\n" + crypto
}

// Bad crypto and unknown suites get 488 with a Warning naming the
// problem; under SRTPRequired a plain offer does too, and an SRTP one parks.
func TestSRTPRefusals(t *testing.T) {
	const key = "WaKi5aL1d0B2P8BpaAbsNDxOlWP9+fJX4bKpUaQa"
	tests := []struct {
		name   string
		policy media.SRTPPolicy
		body   string
		warn   string
	}{
		{"unknown suite", media.SRTPOptional, savpOffer("a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:" + key + "\r\n"), "unknown SRTP crypto suite"},
		{"short key", media.SRTPOptional, savpOffer("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WaKi5aL1d0B2P8Bp\r\n"), "bad SRTP key"},
		{"key not base64", media.SRTPOptional, savpOffer("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:***\r\n"), "not base64"},
		{"SAVP without crypto", media.SRTPOptional, savpOffer(""), "no a=crypto line"},
		{"SRTP off", media.SRTPOff, savpOffer("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + key + "\r\n"), "SRTP is off"},
		{"plain, SRTP required", media.SRTPRequired,
			"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n", "SRTP is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{SRTP: tt.policy})
			ctx := ctxFor(t, 10*time.Second)
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
			res := sendInvite(t, ctx, srv, alice, tt.body)
			require.Equal(t, 488, res.StatusCode)
			w := res.GetHeader("Warning")
			require.NotNil(t, w)
			require.Contains(t, w.Value(), tt.warn)
			require.Zero(t, srv.Lot().Len())
		})
	}

	t.Run("SRTP required, SRTP phone parks", func(t *testing.T) {
		srv := testServer(t, sipadapter.Config{SRTP: media.SRTPRequired})
		ctx := ctxFor(t, 10*time.Second)
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{SRTP: media.SuiteAESCM128SHA1_32, Mute: true})
		require.NoError(t, err)
		require.Equal(t, media.SuiteAESCM128SHA1_32, parked.Negotiated().SRTP.Suite)
		require.NoError(t, parked.WaitReceived(ctx, 5))
		require.Zero(t, parked.RTPStats().Unauthenticated)
		require.NoError(t, parked.Hangup(ctx))
	})

	_, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0", SRTP: 9})
	require.ErrorContains(t, err, "Config.SRTP")
}
