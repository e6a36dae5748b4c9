package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/parktest"
)

// TestBaresipBlindTransferToParkThenRetrieve is the everyday use with real
// phones: alice calls bob, bob blind-transfers alice to the park extension
// (REFER; baresip sends no Referred-By, so the call has no parker), alice
// hears the music, carol dials the orbit and talks with alice. RTP counters
// on the phones prove audio flowed: music to alice while parked, then both
// ways between alice and carol through the server's relay.
func TestBaresipBlindTransferToParkThenRetrieve(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	srv := startParkServer(t)

	alice := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "alice", SIPPort: 31071, CtrlPort: 30071, RTPLow: 18800})
	bob := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "bob", SIPPort: 31073, CtrlPort: 30073, RTPLow: 19000})
	carol := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "carol", SIPPort: 31075, CtrlPort: 30075, RTPLow: 19200})

	alice.Do("dial", bob.URI)
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "bob", 10*time.Second)
	bob.WaitEvent(0, "CALL_ESTABLISHED", "alice", 10*time.Second)

	bob.Do("transfer", "sip:700@"+srv.Addr)
	line := srv.WaitLine("msg=parked", 15*time.Second, "party=sip:alice")
	orbit := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(line)[1]
	require.Contains(t, line, `parker=""`, "baresip sends no Referred-By")
	ai = alice.WaitEvent(ai, "CALL_ESTABLISHED", "700", 10*time.Second)

	// Music on hold: at least a second of it (50 packets) reaches alice.
	softphone.WaitFor(t, 10*time.Second, "alice hears hold music", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= 50
	})

	carol.Do("dial", "sip:"+orbit+"@"+srv.Addr)
	carol.WaitEvent(0, "CALL_ESTABLISHED", orbit, 10*time.Second)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit="+orbit, "retriever=sip:carol")

	// Through the relay, both ways: carol receives alice's tone and alice's
	// packet count keeps rising with carol's.
	aliceBefore, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "carol hears alice and alice hears carol", func() bool {
		carolRx, carolTx := carol.RTPCounts()
		aliceRx, _ := alice.RTPCounts()
		return carolRx >= 50 && carolTx >= 50 && aliceRx >= aliceBefore+50
	})

	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "700", 10*time.Second)
}

// TestBaresipPaged: baresip as a paging target (answermode=auto on its
// account, as SOFTPHONES.md says it needs): on a park it answers the
// server's page by itself, hears the announcement, and is hung up; the
// park does not wait for it.
func TestBaresipPaged(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	speaker := softphone.StartBaresip(t, softphone.BaresipOptions{Name: "speaker", SIPPort: 31101, CtrlPort: 30101, RTPLow: 18600})
	srv := startParkServer(t, "-page", speaker.URI)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	parked, err := alice.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 2*time.Second, "the park does not wait for the page (it rings up to 5 s)")

	ev := speaker.WaitEvent(0, "CALL_ESTABLISHED", "", 10*time.Second)
	softphone.WaitFor(t, 10*time.Second, "the speaker hears the announcement", func() bool {
		rx, _ := speaker.RTPCounts()
		return rx >= 50
	})
	speaker.WaitEvent(ev, "CALL_CLOSED", "", 10*time.Second)
	srv.WaitLine("msg=paged", 5*time.Second, "to="+speaker.URI, "orbit="+parked.Orbit())
	require.NoError(t, parked.Hangup(ctx))
}
