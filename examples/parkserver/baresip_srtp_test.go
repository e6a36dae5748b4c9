package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/internal/wirecap"
)

// The server's music in the SRTP tests is a 1 kHz tone (8 samples a
// period at 8 kHz), so what G.711 of it looks like in the clear is known;
// the phones' microphones are 440 Hz sines (baresip's ausine, linphone's
// WAV).
const (
	srtpTestMusicHz = 1000
	phoneToneHz     = 440
)

// writeToneMusic writes the tone the server plays as music on hold.
func writeToneMusic(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tone.wav")
	require.NoError(t, os.WriteFile(path, softphone.ToneWAV(srtpTestMusicHz, 2*time.Second), 0o644))
	return path
}

// fromServerTo keeps what the server (its RTP ports, startParkServer's
// 17000-17999) sends to a phone's RTP ports lo to hi.
func fromServerTo(lo, hi int) wirecap.Filter {
	to := wirecap.ToPorts(lo, hi)
	return func(src, dst netip.AddrPort) bool {
		return src.Port() >= 17000 && src.Port() <= 17999 && to(src, dst)
	}
}

// requireSRTP checks that datagrams are SRTP and not G.711 of the tone hz
// in the clear: an RTP header (SRTP leaves it readable) with a G.711
// payload type, 20 ms of payload followed by an authentication tag (4 or
// 10 bytes, the same on every packet), and a payload that, decoded as
// G.711, has next to none of its energy at hz, as ciphertext decodes to
// noise. It returns the tag's length.
func requireSRTP(t *testing.T, what string, ds []wirecap.Datagram, hz float64) int {
	t.Helper()
	require.NotEmpty(t, ds, what)
	tag := -1
	for i, d := range ds {
		p, ok := wirecap.ParseRTP(d.Payload)
		require.True(t, ok, "%s: datagram %d from %v is not RTP: % x", what, i, d.Src, d.Payload)
		require.Contains(t, []uint8{0, 8}, p.PayloadType, "%s: datagram %d", what, i)
		if tag < 0 {
			tag = len(p.Rest) - 160
			require.Contains(t, []int{4, 10}, tag, "%s: %d bytes after the RTP header, want 160 of G.711 and an SRTP tag of 4 or 10", what, len(p.Rest))
		}
		require.Len(t, p.Rest, 160+tag, "%s: datagram %d", what, i)
		share := wirecap.ToneShare(wirecap.DecodeG711(p.PayloadType, p.Rest[:160]), hz)
		require.Less(t, share, 0.2, "%s: datagram %d decodes as G.711 of the %v Hz tone in the clear", what, i, hz)
	}
	return tag
}

// requirePlainTone checks that datagrams are plain RTP carrying G.711 of
// the tone hz: 160 bytes of payload, no tag, and (for nearly every packet;
// a phone's first frames may be silence) most of the energy at hz.
func requirePlainTone(t *testing.T, what string, ds []wirecap.Datagram, hz float64) {
	t.Helper()
	require.NotEmpty(t, ds, what)
	toned := 0
	for i, d := range ds {
		p, ok := wirecap.ParseRTP(d.Payload)
		require.True(t, ok, "%s: datagram %d from %v is not RTP: % x", what, i, d.Src, d.Payload)
		require.Contains(t, []uint8{0, 8}, p.PayloadType, "%s: datagram %d", what, i)
		require.Len(t, p.Rest, 160, "%s: datagram %d: 20 ms of G.711 and nothing after it", what, i)
		if wirecap.ToneShare(wirecap.DecodeG711(p.PayloadType, p.Rest), hz) > 0.5 {
			toned++
		}
	}
	require.GreaterOrEqual(t, toned, len(ds)*9/10, "%s: %d of %d datagrams are G.711 of the %v Hz tone", what, toned, len(ds), hz)
}

// phoneTLSFiles makes a CA, the server's certificate and key, and a
// baresip phone's certificate and key in one PEM file (as baresip wants
// them), and returns the files.
func phoneTLSFiles(t *testing.T) (serverCert, serverKey, phoneBundle, caFile string) {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "callpark test CA")
	serverCert, serverKey = tlstest.WriteFiles(t, dir, ca.Issue(t, tlstest.Leaf{}))
	caFile = ca.WriteCA(t, dir)
	phoneDir := t.TempDir()
	phoneCert, phoneKey := tlstest.WriteFiles(t, phoneDir, ca.Issue(t, tlstest.Leaf{}))
	certPEM, err := os.ReadFile(phoneCert)
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(phoneKey)
	require.NoError(t, err)
	phoneBundle = filepath.Join(phoneDir, "phone.pem")
	require.NoError(t, os.WriteFile(phoneBundle, append(certPEM, keyPEM...), 0o600))
	return serverCert, serverKey, phoneBundle, caFile
}

// TestBaresipSRTPOverTLSParksAndIsRetrievedByAPlainPhone is SRTP with a
// real phone: baresip with its srtp module and mediaenc=srtp-mand (RTP/SAVP,
// SDES keys in a=crypto, which is why the signalling is TLS) parks at the
// built server, hears the music, and a plain-RTP baresip retrieves it;
// they hear each other through the relay, which decrypts one side and
// encrypts the other. A capture of the loopback proves what the counters
// cannot: the music and relayed audio reaching alice are SRTP, not G.711
// in the clear, while what reaches carol is plain G.711 of alice's tone
// (so the server decrypted alice's SRTP under the key she offered).
func TestBaresipSRTPOverTLSParksAndIsRetrievedByAPlainPhone(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	const aliceRTP, carolRTP = 21000, 21200
	wire := wirecap.Start(t, fromServerTo(aliceRTP, carolRTP+99))
	toAlice := wirecap.ToPorts(aliceRTP, aliceRTP+99)
	toCarol := wirecap.ToPorts(carolRTP, carolRTP+99)

	serverCert, serverKey, phoneBundle, caFile := phoneTLSFiles(t)
	// optional, not required: carol's plain offer is welcome too.
	srv := startParkServer(t, "-srtp", "optional", "-moh", writeToneMusic(t),
		"-tls-listen", "127.0.0.1:0", "-tls-cert", serverCert, "-tls-key", serverKey)
	line := srv.WaitLine(`msg="park server listening"`, 5*time.Second)
	tlsAddr := regexp.MustCompile(`tls=(\S+)`).FindStringSubmatch(line)[1]

	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31571, CtrlPort: 30571, RTPLow: aliceRTP,
		TLSCert: phoneBundle, TLSCA: caFile, MediaEnc: "srtp-mand"})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31575, CtrlPort: 30575, RTPLow: carolRTP})

	alice.Do("dial", "sip:700@"+tlsAddr+";transport=tls")
	line = srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	requireBaresipSRTP(t, alice, "700")
	// "Parked at 701" (about 2 s), then the music: 3 s of packets hold
	// both.
	softphone.WaitFor(t, 15*time.Second, "alice hears the announcement and the music", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= 150
	})
	music := wire.Wait(t, 0, 150, toAlice, 10*time.Second)
	tag := requireSRTP(t, "announcement and music to alice", music, srtpTestMusicHz)
	t.Logf("announcement and music to alice: %d SRTP packets, %d-byte tag", len(music), tag)

	carol.Do("dial", "sip:"+orbit+"@"+srv.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	from := wire.Len()
	aliceBefore, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "carol hears alice and alice hears carol", func() bool {
		carolRx, carolTx := carol.RTPCounts()
		aliceRx, _ := alice.RTPCounts()
		return carolRx >= 50 && carolTx >= 50 && aliceRx >= aliceBefore+50
	})
	requirePlainTone(t, "alice's audio relayed to carol", wire.Wait(t, from, 50, toCarol, 10*time.Second), phoneToneHz)
	relayed := wire.Wait(t, from, 50, toAlice, 10*time.Second)
	require.Equal(t, tag, requireSRTP(t, "carol's audio relayed to alice", relayed, phoneToneHz), "one suite for the leg")

	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
	require.NotContains(t, alice.Log(), "srtp: failed to decrypt", "alice decrypted all the server sent")
}

// requireBaresipSRTP waits for the phone's word that its call with peer is
// SRTP: baresip's CALL_MENC event (sent once the srtp module has its keys),
// naming the suite the server chose.
func requireBaresipSRTP(t *testing.T, p *softphone.Baresip, peer string) {
	t.Helper()
	i := p.WaitEvent(0, "CALL_MENC", peer, 10*time.Second)
	require.Equal(t, "0,audio,AES_CM_128_HMAC_SHA1_80", p.Event(i - 1)["param"], "baresip's media encryption event for the audio stream names the suite")
}

// TestBaresipSRTPAndPlainParkedTogether: two SRTP phones and a plain one
// parked at once, all on the server's one shared RTP port (-shared-rtp,
// the default), where the music of every parked call leaves in the same
// sendmmsg batches and each SRTP packet is encrypted in the batch's buffer
// under its own leg's key. Each phone hears the music (baresip drops what
// fails to decrypt, and logs it); on the wire the SRTP phones get SRTP and
// the plain phone gets the music's tone in the clear, the control that
// shows the capture's check tells the two apart.
func TestBaresipSRTPAndPlainParkedTogether(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	const aliceRTP, carolRTP, daveRTP = 21000, 21200, 21400
	wire := wirecap.Start(t, fromServerTo(aliceRTP, daveRTP+99))
	srv := startParkServer(t, "-srtp", "optional", "-moh", writeToneMusic(t))
	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31571, CtrlPort: 30571, RTPLow: aliceRTP, MediaEnc: "srtp-mand"})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31575, CtrlPort: 30575, RTPLow: carolRTP})
	dave := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "dave", SIPPort: 31577, CtrlPort: 30577, RTPLow: daveRTP, MediaEnc: "srtp-mand"})
	phones := []*softphone.Baresip{alice, carol, dave}
	for _, p := range phones {
		p.Do("dial", "sip:700@"+srv.Addr)
	}
	for _, p := range phones {
		p.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	}
	requireBaresipSRTP(t, alice, "700")
	requireBaresipSRTP(t, dave, "700")
	// Past the "parked at" announcements (about 2 s) into the music.
	softphone.WaitFor(t, 15*time.Second, "each hears the announcement and the music", func() bool {
		for _, p := range phones {
			if rx, _ := p.RTPCounts(); rx < 150 {
				return false
			}
		}
		return true
	})
	var ports []uint16
	for _, lo := range []int{aliceRTP, carolRTP, daveRTP} {
		ds := wire.Wait(t, 0, 150, wirecap.ToPorts(lo, lo+99), 10*time.Second)
		ports = append(ports, ds[0].Src.Port())
		if lo == carolRTP {
			// The tail: the announcement comes first.
			requirePlainTone(t, "music to carol", ds[len(ds)-50:], srtpTestMusicHz)
		} else {
			requireSRTP(t, fmt.Sprintf("announcement and music to the phone at %d", ds[0].Dst.Port()), ds, srtpTestMusicHz)
		}
	}
	require.Equal(t, ports[0], ports[1], "one shared port")
	require.Equal(t, ports[0], ports[2], "one shared port")
	for _, p := range []*softphone.Baresip{alice, dave} {
		require.NotContains(t, p.Log(), "srtp: failed to decrypt")
	}
}

// TestBaresipPlainRefusedWhenSRTPRequired: with -srtp required a plain
// baresip's park call gets 488 with a Warning saying why: the phone sees
// the call fail with 488, the server logs the refusal, and the 488 on the
// wire (SIP over UDP, captured) carries the Warning.
func TestBaresipPlainRefusedWhenSRTPRequired(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	const daveSIP = 31577
	wire := wirecap.Start(t, wirecap.ToPorts(daveSIP, daveSIP))
	srv := startParkServer(t, "-srtp", "required")
	dave := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "dave", SIPPort: daveSIP, CtrlPort: 30577, RTPLow: 21400})

	dave.Do("dial", "sip:700@"+srv.Addr)
	closed := dave.WaitEvent(0, "CALL_CLOSED", "700", 15*time.Second)
	require.Contains(t, fmt.Sprint(dave.Event(closed - 1)["param"]), "488", "baresip's reason for the closed call")
	srv.WaitLine("msg=refused", 5*time.Second, "status=488", "SRTP is required")

	var reply string
	softphone.WaitFor(t, 5*time.Second, "the 488 to dave's SIP port is captured", func() bool {
		for _, d := range wire.Datagrams() {
			if strings.HasPrefix(string(d.Payload), "SIP/2.0 488") {
				reply = string(d.Payload)
			}
		}
		return reply != ""
	})
	require.Regexp(t, `(?m)^Warning: 399 callpark ".*SRTP is required.*"\r$`, reply)
	for _, l := range srv.Lines() {
		require.NotContains(t, l, "msg=parked", "nothing parked")
	}
}

// TestBaresipSRTPRetrievedBySRTPPhoneHoldAndResume: an SRTP phone retrieves
// an SRTP parked call, so the relay decrypts under one leg's key and
// encrypts under the other's; then each phone puts the call on hold and
// takes it back (re-INVITEs with RTP/SAVP and their keys, answered with the
// server's same key for the leg), and they still hear each other. On the
// wire both legs stay SRTP.
func TestBaresipSRTPRetrievedBySRTPPhoneHoldAndResume(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	const aliceSIP, carolSIP, aliceRTP, carolRTP = 31571, 31575, 21000, 21200
	media := fromServerTo(aliceRTP, carolRTP+99)
	wire := wirecap.Start(t, func(src, dst netip.AddrPort) bool {
		return media(src, dst) || src.Port() == aliceSIP || dst.Port() == aliceSIP || src.Port() == carolSIP || dst.Port() == carolSIP
	})
	srv := startParkServer(t, "-srtp", "required", "-moh", writeToneMusic(t))
	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: aliceSIP, CtrlPort: 30571, RTPLow: aliceRTP, MediaEnc: "srtp-mand"})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: carolSIP, CtrlPort: 30575, RTPLow: carolRTP, MediaEnc: "srtp-mand"})

	alice.Do("dial", "sip:700@"+srv.Addr)
	line := srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	requireBaresipSRTP(t, alice, "700")
	softphone.WaitFor(t, 10*time.Second, "alice hears the park", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= 50
	})

	carol.Do("dial", "sip:"+orbit+"@"+srv.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	requireBaresipSRTP(t, carol, orbit)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	from := wire.Len()
	softphone.BothWays(t, alice, carol)
	requireSRTP(t, "carol's audio relayed to alice", wire.Wait(t, from, 50, wirecap.ToPorts(aliceRTP, aliceRTP+99), 10*time.Second), phoneToneHz)
	requireSRTP(t, "alice's audio relayed to carol", wire.Wait(t, from, 50, wirecap.ToPorts(carolRTP, carolRTP+99), 10*time.Second), phoneToneHz)

	for _, p := range []struct {
		phone *softphone.Baresip
		sip   uint16
	}{{alice, aliceSIP}, {carol, carolSIP}} {
		from := wire.Len()
		p.phone.Do("hold", "")
		sipExchange(t, wire, from, p.sip, "a=sendonly", "a=recvonly")
		from = wire.Len()
		p.phone.Do("resume", "")
		sipExchange(t, wire, from, p.sip, "a=sendrecv", "a=sendrecv")
		softphone.BothWays(t, alice, carol)
	}
	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
	for _, p := range []*softphone.Baresip{alice, carol} {
		require.NotContains(t, p.Log(), "srtp: failed to decrypt")
	}
}

// sipExchange waits until the phone at SIP port sip has sent a re-INVITE
// whose SDP is RTP/SAVP with a=crypto and has offer (its direction), and
// the server has answered it 200 with RTP/SAVP, a=crypto and answer.
func sipExchange(t *testing.T, wire *wirecap.Capture, from int, sip uint16, offer, answer string) {
	t.Helper()
	softphone.WaitFor(t, 10*time.Second, fmt.Sprintf("a re-INVITE from port %d with %s answered 200 with %s", sip, offer, answer), func() bool {
		offered := false
		for _, d := range wire.Datagrams()[from:] {
			msg := string(d.Payload)
			srtp := strings.Contains(msg, "RTP/SAVP") && strings.Contains(msg, "a=crypto:")
			switch {
			case d.Src.Port() == sip && strings.HasPrefix(msg, "INVITE ") && srtp && strings.Contains(msg, offer+"\r\n"):
				offered = true
			case offered && d.Dst.Port() == sip && strings.HasPrefix(msg, "SIP/2.0 200") && srtp && strings.Contains(msg, answer+"\r\n"):
				return true
			}
		}
		return false
	})
}

// TestBaresipFallbackAnswersTheServersSRTPOffer: with -srtp required the
// server's own offers are SRTP. A parked SRTP call times out to the
// fallback, a baresip that takes SRTP only: the server's INVITE offers
// RTP/SAVP with its key, baresip answers with its own, and the two phones
// hear each other through the relay, SRTP on both legs.
func TestBaresipFallbackAnswersTheServersSRTPOffer(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	const aliceRTP, bobRTP = 21000, 21500
	wire := wirecap.Start(t, fromServerTo(aliceRTP, bobRTP+99))
	bob := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "bob", SIPPort: 31579, CtrlPort: 30579, RTPLow: bobRTP, MediaEnc: "srtp-mand"})
	srv := startParkServer(t, "-srtp", "required", "-timeout", "10s", "-fallback", bob.URI)
	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31571, CtrlPort: 30571, RTPLow: aliceRTP, MediaEnc: "srtp-mand"})

	alice.Do("dial", "sip:700@"+srv.Addr)
	srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	// The -timeout (10 s, its least) runs out; bob answers by itself.
	bob.WaitEvent(0, "CALL_ESTABLISHED", "", 30*time.Second)
	requireBaresipSRTP(t, bob, "")
	srv.WaitLine("msg=fallback", 10*time.Second, "target="+bob.URI)
	srv.WaitLine("msg=forwarded", 10*time.Second)
	from := wire.Len()
	softphone.BothWays(t, alice, bob)
	requireSRTP(t, "alice's audio relayed to bob", wire.Wait(t, from, 50, wirecap.ToPorts(bobRTP, bobRTP+99), 10*time.Second), phoneToneHz)
	requireSRTP(t, "bob's audio relayed to alice", wire.Wait(t, from, 50, wirecap.ToPorts(aliceRTP, aliceRTP+99), 10*time.Second), phoneToneHz)

	bob.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
	for _, p := range []*softphone.Baresip{alice, bob} {
		require.NotContains(t, p.Log(), "srtp: failed to decrypt")
	}
}
