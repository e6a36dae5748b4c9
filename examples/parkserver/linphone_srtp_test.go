package main

import (
	"encoding/binary"
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
	"github.com/callpark/callpark/internal/wirecap"
)

// TestLinphoneSRTPMandatoryParksAndIsRetrievedByAPlainPhone: linphone with
// SRTP mandatory (RTP/SAVP, SDES) parks at the built server, hears the
// "parked at" announcement and the music, and a plain baresip retrieves it;
// they hear each other. What linphone plays is recorded to WAV files: the
// music's tone and then carol's are in them, so linphone decrypted the
// server's SRTP. The capture checks what went on the wire: SRTP to
// linphone, never the tone in the clear, and linphone's 440 Hz reaching
// carol as plain G.711 (the server decrypted linphone's SRTP). Over UDP
// (linphone sends SDES keys over it) and over TLS, where linphone sends
// its responses to the Via of the server's requests (the retrieve's
// re-INVITE, the BYE): a Via naming the plain port left them unanswered.
func TestLinphoneSRTPMandatoryParksAndIsRetrievedByAPlainPhone(t *testing.T) {
	interop.RequireTool(t, "linphonecsh", "linphone-cli")
	interop.RequireTool(t, "baresip", "baresip")
	t.Run("udp", func(t *testing.T) { linphoneSRTPParkRetrieve(t, false) })
	t.Run("tls", func(t *testing.T) { linphoneSRTPParkRetrieve(t, true) })
}

func linphoneSRTPParkRetrieve(t *testing.T, overTLS bool) {
	const aliceSIP, aliceRTP, carolRTP = 31581, 21600, 21800
	toAlice := wirecap.ToPorts(aliceRTP, aliceRTP)
	toCarol := wirecap.ToPorts(carolRTP, carolRTP+99)
	fromServer := fromServerTo(aliceRTP, carolRTP+99)
	wire := wirecap.Start(t, func(src, dst netip.AddrPort) bool {
		return fromServer(src, dst) || src.Port() == aliceSIP || dst.Port() == aliceSIP // the SIP, to print on failure
	})

	args := []string{"-srtp", "optional", "-moh", writeToneMusic(t)}
	aliceOpts := softphone.LinphoneOptions{User: "alice", SIPPort: aliceSIP, RTPPort: aliceRTP,
		MediaEncryption: "srtp", MediaEncryptionMandatory: true}
	if overTLS {
		serverCert, serverKey, _, caFile := phoneTLSFiles(t)
		args = append(args, "-tls-listen", "127.0.0.1:0", "-tls-cert", serverCert, "-tls-key", serverKey)
		aliceOpts.TLSCA = caFile
	}
	srv := startParkServer(t, args...)
	parkURI := "sip:700@" + srv.Addr
	if overTLS {
		line := srv.WaitLine(`msg="park server listening"`, 5*time.Second)
		parkURI = "sip:700@" + regexp.MustCompile(`tls=(\S+)`).FindStringSubmatch(line)[1] + ";transport=tls"
	}
	alice := softphone.StartLinphone(t, aliceOpts)
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31585, CtrlPort: 30585, RTPLow: carolRTP})
	defer func() {
		if t.Failed() {
			for _, d := range wire.Datagrams() {
				if d.Src.Port() == aliceSIP || d.Dst.Port() == aliceSIP {
					t.Logf("%v -> %v:\n%s", d.Src, d.Dst, d.Payload)
				}
			}
		}
	}()
	// What linphone plays goes to a WAV file. It starts the stream again
	// (and its file, from the start) at each offer and answer: the
	// retrieve's re-INVITE gets a file of its own.
	dir := t.TempDir()
	heardParked, heardRetrieved := filepath.Join(dir, "parked.wav"), filepath.Join(dir, "retrieved.wav")
	alice.Run("generic", "record "+heardParked)

	alice.Run("generic", "call "+parkURI)
	line := srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	// The server's answer is sendonly: linphone shows the call as put on
	// hold by the other side, and listens.
	alice.WaitCallState("PausedByRemote", 15*time.Second)
	// The music decrypted: after the announcement, the tone in what
	// linphone plays.
	waitHeard(t, alice, 15*time.Second, "linphone plays a second of the music", heardParked, func(music, _ int) bool { return music >= 50 })
	// On the wire, the announcement and the music: SRTP.
	music := wire.Wait(t, 0, 150, toAlice, 10*time.Second)
	tag := requireSRTP(t, "announcement and music to linphone", music, srtpTestMusicHz)
	t.Logf("announcement and music to linphone: %d SRTP packets, %d-byte tag", len(music), tag)
	alice.Run("generic", "record "+heardRetrieved)

	carol.Do("dial", "sip:"+orbit+"@"+srv.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")
	alice.WaitCallState("StreamsRunning", 15*time.Second)
	from := wire.Len()
	softphone.WaitFor(t, 10*time.Second, "carol hears linphone", func() bool {
		rx, tx := carol.RTPCounts()
		return rx >= 50 && tx >= 50
	})
	requirePlainTone(t, "linphone's audio relayed to carol", wire.Wait(t, from, 50, toCarol, 10*time.Second), phoneToneHz)
	relayed := wire.Wait(t, from, 50, toAlice, 10*time.Second)
	require.Equal(t, tag, requireSRTP(t, "carol's audio relayed to linphone", relayed, phoneToneHz), "one suite for the leg")
	// Carol's tone, relayed and encrypted, decrypted by linphone.
	waitHeard(t, alice, 10*time.Second, "linphone plays a second of carol's tone", heardRetrieved, func(_, carol int) bool { return carol >= 50 })

	carol.Do("hangup", "")
	softphone.WaitFor(t, 15*time.Second, "linphone's call ends", func() bool {
		return strings.Contains(alice.Run("generic", "calls"), "No active call")
	})
	// linphone answers the server's requests at their Via's sent-by: it
	// never failed to connect there.
	if strings.Contains(alice.Log(), "Cannot connect to") {
		t.Error("linphone opened a connection to answer the server, and failed (its log's errors follow)")
	}
	srv.WaitLine(`msg="hung up"`, 5*time.Second, "party=sip:carol")
	for _, l := range srv.Lines() {
		require.NotContains(t, l, "failed", "the server's requests to linphone got their answers")
	}
}

// waitHeard waits until what linphone recorded into path holds enough of
// the music's tone and the phone tone (heard gets the counts of 20 ms
// windows of each). On timeout it says what the file held, and linphone's
// last lines about SRTP, streams, recording and errors.
func waitHeard(t *testing.T, alice *softphone.Linphone, timeout time.Duration, what, path string, heard func(music, phone int) bool) {
	t.Helper()
	var music, phone int
	softphone.WaitForOrSay(t, timeout, what, func() bool {
		music, phone = toneWindows(t, path)
		return heard(music, phone)
	}, func() string {
		size := int64(-1)
		if fi, err := os.Stat(path); err == nil {
			size = fi.Size()
		}
		return fmt.Sprintf("%s is %d bytes, 20 ms windows of music %d, of the phone tone %d; linphone's last lines about SRTP, streams and errors:\n%s",
			filepath.Base(path), size, music, phone, alice.LogLines(linphoneTrouble, 15))
	})
}

var linphoneTrouble = regexp.MustCompile(`-error-|(?i)srtp|record|stream.*(start|stop)|moving from state`)

// toneWindows counts the 20 ms windows of what linphone recorded into
// path that are the music's tone and the phone tone. linphone writes the
// file's 44-byte WAV header only when it closes it (zeros till then), and
// 16-bit 8 kHz mono samples after it for a G.711 call: those are read raw,
// as far as they go.
func toneWindows(t *testing.T, path string) (music, phone int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 44 {
		return 0, 0 // not there yet
	}
	b = b[44:]
	window := make([]float64, 160)
	for ; len(b) >= 2*len(window); b = b[2*len(window):] {
		for j := range window {
			window[j] = float64(int16(binary.LittleEndian.Uint16(b[2*j:])))
		}
		if wirecap.ToneShare(window, srtpTestMusicHz) > 0.5 {
			music++
		}
		if wirecap.ToneShare(window, phoneToneHz) > 0.5 {
			phone++
		}
	}
	return music, phone
}
