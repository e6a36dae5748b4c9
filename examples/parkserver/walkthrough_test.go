package main

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
)

// TestREADMEWalkthrough is the README's "Try it with two softphones", step
// by step, with the very config folders it points to (phones/alice and
// phones/bob) and the commands it shows: the server on its defaults with
// -timeout 10s, alice parks at 701, bob retrieves it, bob transfers alice
// back to 700 (702 this time), and after the timeout the server rings bob
// back, at the phone that sent the transfer. A README that does not work
// as written fails here.
func TestREADMEWalkthrough(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	// Step 1, as written: the defaults, 127.0.0.1:5060.
	if c, err := net.ListenPacket("udp", "127.0.0.1:5060"); err != nil {
		t.Fatalf("the walkthrough needs 127.0.0.1:5060 free, as the README's server takes it: %v", err)
	} else {
		c.Close()
	}
	srv := runParkServer(t, "-timeout", "10s")
	require.Equal(t, "127.0.0.1:5060", srv.Addr)

	// Step 2.
	alice := softphone.StartBaresipConfig(t, "phones/alice", "alice", 4471)
	bob := softphone.StartBaresipConfig(t, "phones/bob", "bob", 4473)

	// Step 3: alice parks; on a fresh server that is 701, with music.
	alice.Do("dial", "sip:700@127.0.0.1")
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "700", 10*time.Second)
	srv.WaitLine("msg=parked", 10*time.Second, "orbit=701", "party=sip:alice@127.0.0.1:5071")
	softphone.WaitFor(t, 10*time.Second, "alice hears the music", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= 50
	})

	// Step 4: bob dials the orbit; they hear each other.
	bob.Do("dial", "sip:701@127.0.0.1")
	bi := bob.WaitEvent(0, "CALL_ESTABLISHED", "701", 10*time.Second)
	srv.WaitLine("msg=retrieved", 10*time.Second, "orbit=701", "retriever=sip:bob@127.0.0.1:5073")
	softphone.BothWays(t, alice, bob)

	// Step 5: bob transfers alice to the park extension: 702 (701, freed
	// just now, is reused last); bob is the parker.
	bob.Do("transfer", "sip:700@127.0.0.1")
	srv.WaitLine("msg=re-parked", 10*time.Second, "orbit=702", "parker=sip:bob@127.0.0.1:5073")
	bob.WaitEvent(bi, "CALL_CLOSED", "701", 10*time.Second)

	// After the timeout the server rings bob back, his phone answers, and
	// alice and bob talk again.
	srv.WaitLine("msg=recall", 15*time.Second, "orbit=702")
	bob.WaitEvent(bi, "CALL_ESTABLISHED", "702", 10*time.Second)
	srv.WaitLine("msg=recalled", 10*time.Second, "orbit=702")
	softphone.BothWays(t, alice, bob)

	// Step 6: a hang-up ends both sides; Ctrl-C ends the server, exit 0.
	bob.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "", 10*time.Second)
	srv.WaitLine(`msg="hung up"`, 5*time.Second)
	require.NoError(t, srv.Cmd.Process.Signal(os.Interrupt))
	select {
	case <-srv.Exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not exit on Ctrl-C")
	}
	require.NoError(t, srv.Err)
}
