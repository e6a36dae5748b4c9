package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
)

// TestLinphoneRetrievesAndReparksByRefer is the Referred-By path with a real
// phone: a SIPp caller parks at 701; linphone (bob) dials 701, talks, then
// blind-transfers the call to the park extension. linphone's REFER carries
// Referred-By (sip:bob@127.0.0.1, no port), so the re-parked call's parker is
// bob. A SIPp retriever then takes 702 and hangs up, which ends the parked
// caller's scenario.
func TestLinphoneRetrievesAndReparksByRefer(t *testing.T) {
	interop.RequireTool(t, "linphonecsh", "linphone-cli")
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	bob := softphone.StartLinphone(t, softphone.LinphoneOptions{User: "bob", SIPPort: 31081, RTPPort: 31200})

	parked := startSIPp(t, srv.Addr, "park.xml", "700")
	srv.WaitLine("msg=parked", 15*time.Second, "orbit=701")

	bob.Run("generic", "call sip:701@"+srv.Addr)
	srv.WaitLine("msg=retrieved", 15*time.Second, "orbit=701", "retriever=sip:bob@127.0.0.1")
	bob.WaitCallState("StreamsRunning", 15*time.Second)

	bob.Run("generic", "transfer sip:700@"+srv.Addr)
	srv.WaitLine("msg=re-parked", 15*time.Second, "orbit=702", "parker=sip:bob@127.0.0.1")
	softphone.WaitFor(t, 15*time.Second, "linphone hangs up after the transfer", func() bool {
		return strings.Contains(bob.Run("generic", "calls"), "No active call")
	})

	startSIPp(t, srv.Addr, "retrieve.xml", "702").wait(t, "retrieve")
	require.Contains(t, parked.wait(t, "park"), "parked-at 701")
}
