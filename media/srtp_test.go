package media

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/stretchr/testify/require"
)

// wireLog records what an endpoint read: the datagrams as they came
// (OnPacket) and the audio payloads after decryption (OnAudio).
type wireLog struct {
	mu    sync.Mutex
	raw   [][]byte
	audio [][]byte
}

func (w *wireLog) options(opts EndpointOptions) EndpointOptions {
	opts.OnPacket = func(p []byte) {
		w.mu.Lock()
		w.raw = append(w.raw, bytes.Clone(p))
		w.mu.Unlock()
	}
	opts.OnAudio = func(p []byte) {
		w.mu.Lock()
		w.audio = append(w.audio, bytes.Clone(p))
		w.mu.Unlock()
	}
	return opts
}

func (w *wireLog) counts() (raw, audio int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.raw), len(w.audio)
}

func (w *wireLog) snapshot() (raw, audio [][]byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.raw...), append([][]byte(nil), w.audio...)
}

// crossKeys returns the keys of two ends of one SRTP stream pair.
func crossKeys(suite SRTPSuite) (server, phone *SRTPKeys) {
	a, b := NewSRTPKey(), NewSRTPKey()
	return &SRTPKeys{Suite: suite, Local: a, Remote: b}, &SRTPKeys{Suite: suite, Local: b, Remote: a}
}

// isFrame reports whether payload is one of f's frames.
func isFrame(f *Frames, payload []byte) bool {
	for i := range f.Len() {
		if bytes.Equal(f.Payload(i), payload) {
			return true
		}
	}
	return false
}

// Music to an SRTP leg leaves encrypted (no packet on the wire carries a
// frame of the music in the clear, each is longer by the suite's tag) and
// decrypts to the music's frames, from a port of its own and from a shared
// port (the sendmmsg batch) alike.
func TestSRTPMusic(t *testing.T) {
	for _, suite := range []SRTPSuite{SuiteAESCM128SHA1_80, SuiteAESCM128SHA1_32} {
		t.Run(suite.String(), func(t *testing.T) {
			forEachIOPath(t, func(t *testing.T, s *Scheduler) {
				for _, shared := range []bool{false, true} {
					serverKeys, phoneKeys := crossKeys(suite)
					var heard wireLog
					phoneConn := listenLoopback(t)
					var leg *Endpoint
					opts := EndpointOptions{Remote: addrOf(phoneConn), Codec: PCMA, Scheduler: s, SRTP: serverKeys}
					if shared {
						opts.Scheduler = nil
						leg = newSharedEndpoint(t, newTestSharedPort(t, s), opts)
					} else {
						leg = newTestEndpoint(t, opts)
					}
					ph, err := NewEndpoint(phoneConn, heard.options(EndpointOptions{Remote: leg.LocalAddr(), Codec: PCMA, Scheduler: s, SRTP: phoneKeys}))
					require.NoError(t, err)
					t.Cleanup(func() { _ = ph.Close() })
					frames := testFrames(PCMA, 5)
					require.NoError(t, leg.PlayMusic(frames))
					got, ok := leg.SRTP()
					require.True(t, ok)
					require.Equal(t, suite, got)

					waitFor(t, "10 decrypted packets", func() bool { _, n := heard.counts(); return n >= 10 })
					raw, audio := heard.snapshot()
					for _, p := range raw {
						require.Len(t, p, rtpHeaderSize+SamplesPerFrame+suite.authTagLen())
						require.False(t, isFrame(frames, p[rtpHeaderSize:rtpHeaderSize+SamplesPerFrame]), "a frame in the clear on the wire")
					}
					for _, p := range audio {
						require.True(t, isFrame(frames, p), "decrypted payload is no frame of the music")
					}
					require.Zero(t, ph.Stats().Unauthenticated)
					leg.StopMusic()
				}
			})
		})
	}
}

// Plain RTP, or SRTP under another key, sent to an SRTP leg is dropped
// before it can move the leg's destination (symmetric RTP).
func TestSRTPDropsUnauthenticated(t *testing.T) {
	s := newTestScheduler(t)
	serverKeys, phoneKeys := crossKeys(SuiteAESCM128SHA1_80)
	ph := newPhone(t)
	sdpAddr := netip.MustParseAddrPort("127.0.0.1:9")
	leg := newTestEndpoint(t, EndpointOptions{Remote: sdpAddr, Codec: PCMU, Scheduler: s, SRTP: serverKeys})

	inject(leg, ph, ph.packet(0, false, make([]byte, SamplesPerFrame)))
	wrong, err := srtp.CreateContext(make([]byte, 16), bytes.Repeat([]byte{1}, 14), srtp.ProtectionProfileAes128CmHmacSha1_80)
	require.NoError(t, err)
	enc, err := wrong.EncryptRTP(nil, ph.packet(0, false, make([]byte, SamplesPerFrame)), nil)
	require.NoError(t, err)
	inject(leg, ph, enc)
	st := leg.Stats()
	require.Equal(t, uint64(2), st.Unauthenticated)
	require.Zero(t, st.Received)
	require.Equal(t, sdpAddr, leg.Remote(), "an unauthenticated packet moved the leg")

	// The right key is heard, moves the leg, and a replay is refused.
	right, err := srtp.CreateContext(phoneKeys.Local[:16], phoneKeys.Local[16:], srtp.ProtectionProfileAes128CmHmacSha1_80)
	require.NoError(t, err)
	good, err := right.EncryptRTP(nil, ph.packet(0, false, make([]byte, SamplesPerFrame)), nil)
	require.NoError(t, err)
	inject(leg, ph, bytes.Clone(good))
	require.Equal(t, uint64(1), leg.Stats().Received)
	require.Equal(t, ph.addr(), leg.Remote())
	inject(leg, ph, good)
	require.Equal(t, uint64(3), leg.Stats().Unauthenticated)
}

// A bridge between an SRTP leg and a plain one decrypts on one side and
// encrypts on the other, both ways.
func TestSRTPRelayToPlain(t *testing.T) {
	forEachIOPath(t, func(t *testing.T, s *Scheduler) {
		serverKeys, phoneKeys := crossKeys(SuiteAESCM128SHA1_80)
		var secureHeard, plainHeard wireLog
		secureConn, plainConn := listenLoopback(t), listenLoopback(t)
		secureLeg := newTestEndpoint(t, EndpointOptions{Remote: addrOf(secureConn), Codec: PCMU, Scheduler: s, SRTP: serverKeys})
		plainLeg := newTestEndpoint(t, EndpointOptions{Remote: addrOf(plainConn), Codec: PCMU, Scheduler: s})
		securePhone, err := NewEndpoint(secureConn, secureHeard.options(EndpointOptions{Remote: secureLeg.LocalAddr(), Codec: PCMU, Scheduler: s, SRTP: phoneKeys}))
		require.NoError(t, err)
		t.Cleanup(func() { _ = securePhone.Close() })
		plainPhone, err := NewEndpoint(plainConn, plainHeard.options(EndpointOptions{Remote: plainLeg.LocalAddr(), Codec: PCMU, Scheduler: s}))
		require.NoError(t, err)
		t.Cleanup(func() { _ = plainPhone.Close() })

		r, err := Bridge(secureLeg, plainLeg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = r.Close() })
		fromSecure, fromPlain := testFrames(PCMU, 3), NewFrames(PCMU, sine(0, 4*SamplesPerFrame))
		require.NoError(t, securePhone.PlayMusic(fromSecure))
		require.NoError(t, plainPhone.PlayMusic(fromPlain))

		waitFor(t, "audio both ways", func() bool {
			_, a := secureHeard.counts()
			_, b := plainHeard.counts()
			return a >= 10 && b >= 10
		})
		raw, audio := plainHeard.snapshot()
		for i, p := range audio {
			// The SRTP phone's audio, in the clear on the plain side.
			require.True(t, isFrame(fromSecure, p), "plain phone heard no frame of the SRTP phone")
			require.Len(t, raw[i], rtpHeaderSize+SamplesPerFrame)
		}
		raw, audio = secureHeard.snapshot()
		for _, p := range audio {
			require.True(t, isFrame(fromPlain, p), "SRTP phone heard no frame of the plain phone")
		}
		for _, p := range raw {
			require.Len(t, p, rtpHeaderSize+SamplesPerFrame+10)
			require.False(t, isFrame(fromPlain, p[rtpHeaderSize:rtpHeaderSize+SamplesPerFrame]), "plain audio in the clear on the SRTP side")
		}
		require.Zero(t, securePhone.Stats().Unauthenticated)
		require.Zero(t, secureLeg.Stats().Unauthenticated)
		st := r.Stats()
		require.Positive(t, st.AToB.Packets)
		require.Positive(t, st.BToA.Packets)
	})
}

// SetSRTP moves a leg between plain and SRTP; a leg that comes back to the
// same key continues its context (the peer's context accepts what follows
// without a new rollover guess), and bad keys are refused.
func TestEndpointSetSRTP(t *testing.T) {
	s := newTestScheduler(t)
	serverKeys, phoneKeys := crossKeys(SuiteAESCM128SHA1_80)
	ph := newPhone(t)
	leg := newTestEndpoint(t, EndpointOptions{Remote: ph.addr(), Codec: PCMU, Scheduler: s})
	require.NoError(t, leg.PlayMusic(testFrames(PCMU, 2)))
	plain := ph.read()
	require.Len(t, plain.Payload, SamplesPerFrame)

	require.NoError(t, leg.SetSRTP(serverKeys))
	out := leg.srtpOut
	dec, err := srtp.CreateContext(phoneKeys.Remote[:16], phoneKeys.Remote[16:], srtp.ProtectionProfileAes128CmHmacSha1_80)
	require.NoError(t, err)
	readSecure := func() rtp.Packet {
		t.Helper()
		for {
			pkt := ph.read()
			b, err := pkt.Marshal()
			require.NoError(t, err)
			if len(pkt.Payload) == SamplesPerFrame {
				continue // a plain packet sent before the switch
			}
			clear, err := dec.DecryptRTP(nil, b, nil)
			require.NoError(t, err)
			var p rtp.Packet
			require.NoError(t, p.Unmarshal(clear))
			return p
		}
	}
	p := readSecure()
	require.Len(t, p.Payload, SamplesPerFrame)
	require.Equal(t, plain.SSRC, p.SSRC, "the leg keeps its SSRC")

	require.NoError(t, leg.SetSRTP(nil))
	_, secure := leg.SRTP()
	require.False(t, secure)
	require.NoError(t, leg.SetSRTP(serverKeys))
	require.Same(t, out, leg.srtpOut, "the same key takes its context back")
	readSecure()

	require.ErrorIs(t, leg.SetSRTP(&SRTPKeys{Suite: SuiteAESCM128SHA1_80, Local: serverKeys.Local}), ErrInvalidArgument)
	require.ErrorIs(t, leg.SetSRTP(&SRTPKeys{Suite: 9, Local: serverKeys.Local, Remote: serverKeys.Remote}), ErrInvalidArgument)
	_, err = NewEndpoint(listenLoopback(t), EndpointOptions{Codec: PCMU, Scheduler: s, SRTP: &SRTPKeys{Suite: SuiteAESCM128SHA1_80}})
	require.ErrorIs(t, err, ErrInvalidArgument)
	require.ErrorContains(t, err, "SRTP.Local")
}
